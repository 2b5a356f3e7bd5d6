"""dataverse/emulator"""
