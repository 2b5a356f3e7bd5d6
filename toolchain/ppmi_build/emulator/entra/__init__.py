"""The Entra ID directory state that Microsoft Graph and Azure Resource Manager both front: federated identity
credentials (FICs) on app registrations and on user-assigned managed identities (domain-spec §1.7).

Not a service of its own: :mod:`ppmi_build.emulator.graph` and :mod:`ppmi_build.emulator.arm` serve it, each in
its API's shape (:mod:`.models` holds the store and the rules they share).
"""
