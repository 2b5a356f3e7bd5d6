"""Service-independent machinery of the emulator (DESIGN.md §3 "The emulator").

* :mod:`.server` — the loopback HTTP/1.1 server: reads requests, applies faults, checks the bearer token,
  hands the request to the service that claims its path, logs it;
* :mod:`.routing` — :class:`~.routing.Service` and :class:`~.routing.Route`, what a service package declares,
  and :func:`~.routing.dispatch`;
* :mod:`.state` — :class:`~.state.EmulatorState`, one emulator instance's database, lock, token, faults and
  request log;
* :mod:`.faults` — fault injection and the ``/_emulator/…`` control surface;
* :mod:`.auth` — the ``Authorization: Bearer`` check;
* :mod:`.store` — the SQLite connection, transactions and Web API table metadata;
* :mod:`.odata` — the OData query options (``$select``, ``$filter``, ``$orderby``, ``$top``) as SQL;
* :mod:`.responses` — the ``(status, headers, body)`` triple, JSON and OData error bodies.

Nothing here knows a particular service; the services are listed in :mod:`ppmi_build.emulator.services`.
"""
