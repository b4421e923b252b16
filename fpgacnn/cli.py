"""Command line: a thin layer over the Python API.

Exit codes: 0 ok, 1 a check failed (e.g. csim not bit-exact) or a tool failed,
2 bad usage or input. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import FpgacnnError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fpgacnn")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or stage messages (errors still print).")
@click.option("-v", "--verbose", is_flag=True, help="Also show TensorFlow's and hls4ml's own messages.")
def cli(quiet, verbose):
    """Trim, quantize and turn a trained Keras CNN into a bit-exact hls4ml FPGA project.

    \b
    Examples:
      fpgacnn demo                                  # digits CNN end to end
      fpgacnn build model.h5 --data data.npz --out hw_projects/cam
      fpgacnn csim hw_projects/cam --samples 200
    """
    from .progress import configure

    configure(quiet=quiet, verbose=verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:  # Keras/QKeras serialization chatter is not actionable for a user
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


@cli.command()
@click.option("--out", default="hw_projects/demo", show_default=True, type=click.Path(), help="Project directory.")
@click.option("--force", is_flag=True, help="Replace an existing project directory.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=40, show_default=True, help="Training epochs of the float model.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
def demo(out, force, seed, epochs, as_json):
    """Train a small VGG on the bundled digits, then trim, quantize, generate and csim it."""
    from .demo import run_demo
    from .pipeline import summary_table

    report = run_demo(out, force=force, seed=seed, epochs=epochs, log=(lambda m: None) if as_json else _log)
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["bit_exact"]:
        sys.exit(1)


@cli.command()
@click.argument("config", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
def run(config, as_json):
    """Run the pipeline described by a YAML CONFIG (see examples/).

    \b
    Example:
      fpgacnn run examples/digits.yaml
    """
    from .config import load_config
    from .job import run_job
    from .pipeline import summary_table

    cfg = load_config(config)
    report = run_job(cfg, log=None if as_json else _log)
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["bit_exact"]:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz with x/y or x_train/y_train/x_test/y_test.")
@click.option("--out", required=True, type=click.Path(), help="Project directory to create.")
@click.option("--keep", default=0.5, show_default=True, help="Fraction of kernels kept per layer.")
@click.option("--bits", default=8, show_default=True, help="Weight/activation bit width.")
@click.option("--part", default="xc7z020clg400-1", show_default=True)
@click.option("--backend", default="Vitis", show_default=True, type=click.Choice(["Vitis", "Vivado"]))
@click.option("--epochs", default=10, show_default=True, help="Fine-tune epochs after trim and for QAT.")
@click.option("--name", default="myproject", show_default=True, help="Project / top function name.")
@click.option("--force", is_flag=True, help="Replace an existing project directory.")
@click.option("--allow-code", is_flag=True, help="Allow Lambda/custom layers to run code from the model file.")
@click.option("--json", "as_json", is_flag=True)
def build(model, data, out, keep, bits, part, backend, epochs, name, force, allow_code, as_json):
    """Run the whole pipeline on your trained MODEL (.h5/.keras/SavedModel) and DATA."""
    from .data import load_npz_split
    from .modelio import file_sha256, load_model
    from .pipeline import PipelineOptions, check_output_dir, run_pipeline, summary_table

    check_output_dir(out, force)
    m = load_model(model, allow_code=allow_code)
    split = load_npz_split(data)
    opts = PipelineOptions(keep=keep, bits=bits, part=part, backend=backend, finetune_epochs=epochs,
                           qat_epochs=epochs, name=name, force=force)
    report = run_pipeline(m, split, Path(out), opts, log=None if as_json else _log,
                          source_sha256=file_sha256(model))
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["bit_exact"]:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz with representative images (x or x_train).")
@click.option("--keep", default=0.5, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Where to save the trimmed model (.h5 or .keras).")
@click.option("--force", is_flag=True)
def trim(model, data, keep, out, force):
    """Remove the least relevant kernels of MODEL and save the smaller model."""
    from .data import load_npz_split
    from .modelio import load_model
    from .trimming import trim as trim_model
    from .errors import OutputExistsError

    if Path(out).exists() and not force:
        raise OutputExistsError(out)
    m = load_model(model)
    split = load_npz_split(data)
    small = trim_model(m, split.x_train, keep=keep)
    small.save(out)
    click.echo(f"{m.count_params():,} -> {small.count_params():,} parameters; saved {out}")


@cli.command("csim")
@click.argument("project_dir", type=click.Path())
@click.option("--samples", type=int, default=None, help="Simulate only the first N test vectors.")
@click.option("--jobs", type=int, default=None, help="Parallel testbench processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True)
def csim_cmd(project_dir, samples, jobs, as_json):
    """Build the project's testbench with g++ and check it bit-exact against the QKeras model."""
    from .hls.csim import csim

    result = csim(project_dir, samples=samples, jobs=jobs)
    d = result.to_dict()
    if as_json:
        _echo_json(d)
    else:
        click.echo(f"bit-exact: {d['bit_exact']}  samples: {d['samples']}  argmax agreement: "
                   f"{d['argmax_agreement']:.4f}  accuracy: {d['accuracy']}  ({d['img_per_s']:.0f} img/s)")
    sys.exit(0 if result.bit_exact else 1)


@cli.command()
@click.argument("project_dir", type=click.Path())
def report(project_dir):
    """Write report.html (self-contained, plots embedded) and report.md for a project."""
    from .report import write_report

    html_path, md_path = write_report(project_dir)
    click.echo(f"wrote {html_path} and {md_path}")


def _log(msg: str) -> None:
    from .progress import is_quiet

    if not is_quiet():
        click.echo(msg, err=True)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="fpgacnn", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except FpgacnnError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
