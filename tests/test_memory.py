"""The malloc settings of the server and the generate workers."""

import platform

from locattr.memory import keep_freed_memory


def test_malloc_thresholds_are_set_on_glibc() -> None:
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
