"""Task suites (items + graders), answer extraction, and the code sandbox."""

from routers.tasks.base import Task, TaskItem
from routers.tasks.registry import TASKS, get_task, load_task_items, parse_task_spec

__all__ = ["TASKS", "Task", "TaskItem", "get_task", "load_task_items", "parse_task_spec"]
