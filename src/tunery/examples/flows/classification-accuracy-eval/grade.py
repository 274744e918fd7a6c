from promptflow.core import tool


@tool
def grade(groundtruth: str, prediction: str) -> str:
    """Correct when the prediction names the true label (case and spacing do not matter)."""
    same = str(groundtruth).strip().lower() == str(prediction).strip().lower()
    return "Correct" if same else "Incorrect"
