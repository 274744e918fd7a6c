from promptflow.core import log_metric, tool


@tool
def calculate_accuracy(grades: list[str]) -> dict:
    """The share of lines graded Correct, logged as the run's accuracy metric."""
    accuracy = round(grades.count("Correct") / len(grades), 2) if grades else 0.0
    log_metric("accuracy", accuracy)
    return {"accuracy": accuracy, "lines": len(grades)}
