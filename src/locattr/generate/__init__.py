"""`locattr-generate`'s engine: prompts in, graphs, activation contexts and the index out.

`generate(options)` builds or extends a database on one or more workers and resumes by prompt
identity; the command line (`locattr.cli.generate`) only parses flags and shows progress.
"""

from locattr.generate.build import GenerateResult, Progress, generate, resolve_model
from locattr.generate.options import DatasetChoice, GenerateError, GenerateOptions, Shard
from locattr.generate.prompts import Prompt

__all__ = [
    "DatasetChoice",
    "GenerateError",
    "GenerateOptions",
    "GenerateResult",
    "Progress",
    "Prompt",
    "Shard",
    "generate",
    "resolve_model",
]
