from promptflow import tool


@tool
def clean_summary(text: str) -> str:
    """The first non-empty line of the model's answer, without surrounding quotes."""
    for line in text.splitlines():
        line = line.strip().strip('"').strip()
        if line:
            return line
    return ""
