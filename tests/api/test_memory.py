"""The server's malloc settings."""

import platform

from locattr.api.memory import keep_freed_memory


def test_malloc_thresholds_are_set_on_glibc() -> None:
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
