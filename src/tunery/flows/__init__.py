"""Prompt flows: run Prompt flow ``flow.dag.yaml`` flows locally, unchanged, against tunery's
models or any OpenAI-compatible endpoint; batch runs over JSONL data, evaluation runs that grade
a previous run, stored runs and their side-by-side comparison."""

from tunery.flows.batch import Progress, RunCanceled, RunSpec, create_run, load_run_file
from tunery.flows.connections import (
    Connection,
    ModelFactory,
    ModelResolver,
    add_connection,
    get_connection,
    list_connections,
    remove_connection,
)
from tunery.flows.develop import (
    FlowTestResult,
    ValidationReport,
    set_default_variant,
    test_flow,
    validate_flow,
)
from tunery.flows.executor import AggregationResult, FlowExecutor, LineResult, NodeRun
from tunery.flows.runs import RunRecord, get_run, list_runs, load_details, load_metrics, read_logs
from tunery.flows.spec import Flow, InvalidFlow, Node, Problem, load_flow
from tunery.flows.visualize import compare_runs, render_html, visualize

__all__ = [
    "AggregationResult", "Connection", "Flow", "FlowExecutor", "FlowTestResult", "InvalidFlow", "LineResult",
    "ModelFactory", "ModelResolver", "Node", "NodeRun", "Problem", "Progress", "RunCanceled", "RunRecord", "RunSpec",
    "ValidationReport", "add_connection", "compare_runs", "create_run", "get_connection", "get_run",
    "list_connections", "list_runs", "load_details", "load_flow", "load_metrics", "load_run_file", "read_logs",
    "remove_connection", "render_html", "set_default_variant", "test_flow", "validate_flow", "visualize",
]
