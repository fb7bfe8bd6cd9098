"""The command's allocator thresholds: glibc's mallopt called with <malloc.h>'s parameter numbers,
and nothing done where the user set a MALLOC_* variable or the C library is not glibc."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest

from bindiff import allocator


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append((parameter, value))
        return 1  # glibc: 1 on success


@pytest.fixture
def fake(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc if name == "libc.so.6" else None)
    for name in [n for n in os.environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    return libc


def test_the_thresholds_are_raised_through_mallopt(fake):
    assert allocator.keep_freed_memory() is True
    # <malloc.h>: M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3; 256 MB and 1 GB
    assert fake.calls == [(-3, 268_435_456), (-1, 1_073_741_824)]


def test_a_malloc_variable_of_the_users_leaves_glibc_alone(fake, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.keep_freed_memory() is False and fake.calls == []


def test_another_system_or_c_library_is_left_alone(fake, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False and fake.calls == []
    monkeypatch.setattr(sys, "platform", "linux")

    def no_glibc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert allocator.keep_freed_memory() is False
