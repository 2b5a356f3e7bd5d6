"""A minimal, valid PE32+ (x64) image built byte by byte from the PE/COFF specification
(https://learn.microsoft.com/windows/win32/debug/pe-format), because Mono ``mcs`` only emits PE32.

Layout: DOS header (``MZ``, ``e_lfanew`` = 0x80) + PE signature + COFF file header (AMD64, one
section, ``IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE | IMAGE_FILE_DLL``) +
PE32+ optional header (magic 0x20B, 16 data directories) + one ``.text`` section holding
``xor eax, eax; ret``. FileAlignment 0x200, SectionAlignment 0x1000.

Tests check the result with independent parsers (pefile) and signers (osslsigncode).
"""

from __future__ import annotations

import struct
from pathlib import Path

FILE_ALIGN = 0x200
SECT_ALIGN = 0x1000


def make_pe32plus(path: Path, *, text_size: int = 0x200, extra: bytes = b"") -> Path:
    """Write a PE32+ DLL to ``path``. ``text_size`` is the raw size of .text (a multiple of 0x200);
    ``extra`` is appended after the last section (unsigned trailing data, which is hashed)."""
    assert text_size % FILE_ALIGN == 0
    e_lfanew = 0x80
    dos = bytearray(e_lfanew)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, e_lfanew)

    n_sections = 1
    opt_size = 112 + 16 * 8  # PE32+ standard + Windows fields (112) + 16 data directories
    coff = struct.pack("<HHIIIHH", 0x8664, n_sections, 0, 0, 0, opt_size, 0x0022 | 0x2000)

    headers_raw = e_lfanew + 4 + 20 + opt_size + 40 * n_sections
    size_of_headers = (headers_raw + FILE_ALIGN - 1) // FILE_ALIGN * FILE_ALIGN
    text_rva = SECT_ALIGN
    size_of_image = text_rva + (text_size + SECT_ALIGN - 1) // SECT_ALIGN * SECT_ALIGN

    opt = bytearray()
    # Magic, linker version, SizeOfCode, SizeOf(Un)InitializedData, AddressOfEntryPoint, BaseOfCode
    opt += struct.pack("<HBBIIIII", 0x20B, 14, 0, text_size, 0, 0, text_rva, text_rva)
    opt += struct.pack("<Q", 0x180000000)  # ImageBase
    opt += struct.pack("<II", SECT_ALIGN, FILE_ALIGN)
    opt += struct.pack("<HHHHHH", 6, 0, 0, 0, 6, 0)  # OS / image / subsystem versions
    opt += struct.pack("<I", 0)  # Win32VersionValue
    opt += struct.pack("<III", size_of_image, size_of_headers, 0)  # SizeOfImage, SizeOfHeaders, CheckSum
    opt += struct.pack("<HH", 3, 0x8160)  # Subsystem CUI; DllCharacteristics (DYNAMIC_BASE|NX|HIGH_ENTROPY|TS_AWARE)
    opt += struct.pack("<QQQQ", 0x100000, 0x1000, 0x100000, 0x1000)  # stack/heap reserve/commit
    opt += struct.pack("<II", 0, 16)  # LoaderFlags, NumberOfRvaAndSizes
    opt += b"\0" * (16 * 8)
    assert len(opt) == opt_size

    section = struct.pack("<8sIIIIIIHHI", b".text", 3, text_rva, text_size, size_of_headers, 0, 0, 0, 0,
                          0x60000020)  # CODE | EXECUTE | READ
    head = bytes(dos) + b"PE\0\0" + coff + bytes(opt) + section
    head += b"\0" * (size_of_headers - len(head))
    text = bytearray(text_size)
    text[0:3] = b"\x31\xc0\xc3"  # xor eax, eax; ret
    path.write_bytes(head + bytes(text) + extra)
    return path
