"""Any-to-any evaluation on ToyWorld: tasks, pluggable generators, probes, scores, reports.

Example:
    >>> from codi_sdk.eval import evaluate, get_generator, parse_tasks
    >>> res = evaluate(get_generator("oracle"), parse_tasks("text->image"), split="seen", n=4)
    >>> res["tasks"][0]["accuracy"]
    1.0
"""

from .generators import GENERATORS, ChanceGenerator, Generator, OracleGenerator, get_generator
from .harness import accuracy_matrix, evaluate, evaluate_task, render_inputs
from .report import markdown_table, save_heatmap, write_results
from .tasks import DEFAULT_TASKS, Task, parse_task, parse_tasks

__all__ = [
    "DEFAULT_TASKS",
    "GENERATORS",
    "ChanceGenerator",
    "Generator",
    "OracleGenerator",
    "Task",
    "accuracy_matrix",
    "evaluate",
    "evaluate_task",
    "get_generator",
    "markdown_table",
    "parse_task",
    "parse_tasks",
    "render_inputs",
    "save_heatmap",
    "write_results",
]
