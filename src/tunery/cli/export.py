"""`tunery export`: a model into a verified Hugging Face folder, ONNX decoder or GGUF file."""

from __future__ import annotations

import shlex
from functools import partial
from pathlib import Path

import click
from rich.markup import escape

from tunery.cli._common import console, human_bytes, print_json, status


@click.command()
@click.argument("model")
@click.option("--format", "-f", "fmt", required=True, type=click.Choice(["hf", "onnx", "gguf"]),
              help="hf: merged Hugging Face folder; onnx: ONNX Runtime decoder; gguf: llama.cpp/Ollama file.")
@click.option("--quantize", "-q", default=None, metavar="TYPE",
              help="onnx: none (default), int8 or int4; gguf: f16 (default), q8_0, q4_0 or q4_1; hf: none.")
@click.option("--output", "-o", "output", required=True, type=click.Path(path_type=Path),
              help="Folder to write the export into (created; must be empty, or an earlier export with --force).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="onnx int4: chat JSONL that GPTQ calibrates on (default: the fine-tune's own training file, "
                   "else the bundled travel chats).")
@click.option("--force", is_flag=True, help="Replace the output folder if it holds an earlier export.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (with the verification report) as JSON.")
def export(model: str, fmt: str, quantize: str | None, output: Path, calibration: Path | None, force: bool,
           as_json: bool) -> None:
    """Export MODEL (a base model, fine-tuned model or checkpoint) to --format in -o DIR.

    A LoRA fine-tune is merged into its base weights first. The export is then loaded back and
    the same prompts run through it and the source model: the greedy-token agreement and the
    loss change must be within the format's tolerance, or nothing is written.

    ONNX int4 weights are chosen by GPTQ on calibration chats (--calibration), with the
    attention's input projections and the embedding table (which a tied LM head shares) kept at
    8 bits.

    \b
    Examples:
      tunery export ft:smollm2-135m-instruct:travel:abc123 -f onnx -q int4 -o travel-int4
      tunery export smollm2-135m-instruct -f gguf -q q4_1 -o smollm2-gguf
      tunery deploy ./travel-int4 --name travel-int4
    """
    from tunery.export import export_model

    with status(f"exporting {model} to {fmt}") as update:
        result = export_model(model, fmt, output, quantize=quantize, force=force, progress=update,
                              calibration=calibration)
    if as_json:
        print_json({"path": str(result.path), **result.manifest})
        return
    r = result.report
    # soft_wrap: a path or a command is never broken across lines (a pipe or a log is 80 columns);
    # the commands quote the path, so that one with spaces can be pasted into a shell as it is; names
    # and paths are text: neither markup ("[b]") nor emoji codes (the ":new:" of ft:base:new:id)
    line = partial(console.print, soft_wrap=True, emoji=False)
    line(f"[green]exported[/] {escape(result.source_model)} as {fmt} ({result.quantize}) to "
         f"[bold]{escape(str(result.path))}[/] ({human_bytes(result.size_bytes)}, {result.seconds:.0f}s)")
    line(f"  verified: {escape(r.summary())}")
    line(f"  perplexity {r.source_ppl:.2f} -> {r.export_ppl:.2f}")
    if fmt == "onnx":
        line(f"  serve it: [bold]{escape(f'tunery deploy {shlex.quote(str(result.path))} --name NAME')}[/]")
    elif fmt == "gguf":
        modelfile = shlex.quote(str(result.path / "Modelfile"))
        line(f"  run it: [bold]{escape(f'ollama create NAME -f {modelfile}')}[/] or llama.cpp with "
             f"{escape(str(result.main_file))}")
