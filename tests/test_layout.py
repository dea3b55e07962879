"""Data flows one way: no module imports a later stage (see dropdown_rank/__init__.py); and the benchmarks README quotes only its result files."""
import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dropdown_rank"
# Stage of every top-level module or subpackage, in the order data flows through them. The Beam engine's modules
# sit at the stages they implement: its validation beside the log schema, its graph and sample pipeline after the
# in-memory graph and samples, its orchestration beside build.
STAGES = ["_env", "_io", "logs", "beam.common", "beam.validate", "split", "vocab", "tables", "graph", "counters", "features", "records",
          "samples", "assembler", "beam.pipeline", "workdir", "build", "beam.engine", "beam", "replay", "dataset", "layers", "model", "optimizers",
          "cluster", "train", "daily", "evaluate", "export", "cli"]
PARALLEL = {"evaluate": STAGES.index("evaluate"), "export": STAGES.index("evaluate")}  # both read a trained run; neither needs the other


def stage_name(module: str) -> str:
    """The entry of STAGES a module belongs to: its own dotted name if listed (``beam.validate``), else its top level."""
    parts = module.split(".")[1:] or [""]  # "" for the package itself
    return ".".join(parts[:2]) if ".".join(parts[:2]) in STAGES else parts[0]


def stage_of(module: str) -> int:
    if module == "dropdown_rank":
        return 0
    name = stage_name(module)
    assert name in STAGES, f"{module}: add it to STAGES in {__file__} at its place in the data flow"
    return PARALLEL.get(name, STAGES.index(name))


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "dropdown_rank":  # from dropdown_rank import _io: the module _io
            for alias in node.names:  # a name the package itself defines (__version__) is stage 0
                is_module = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").exists()
                yield f"dropdown_rank.{alias.name}" if is_module else "dropdown_rank"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dropdown_rank"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("dropdown_rank"))


def test_no_module_imports_a_later_stage():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("dropdown_rank",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for target in imports(path):
            if stage_of(target) > stage_of(module) or (stage_of(target) == stage_of(module) and stage_name(target) != stage_name(module) and module != "dropdown_rank"):
                offenders.append(f"{module} imports {target}")
    assert not offenders, offenders


def module_path(module: str) -> Path:
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_by(module: str) -> set:
    """Every dropdown_rank module ``module`` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for target in imports(module_path(current)):
            if target not in seen and module_path(target).exists():
                seen.add(target)
                todo.append(target)
    return seen


def test_training_evaluation_and_export_read_built_data_without_the_build():
    """They read a work directory through workdir.py and neighbor tables through tables.py: the build, the graph's
    build code (graph.py) and the Beam engine stay out of their imports, and out of the model's."""
    for module in ("dropdown_rank.train", "dropdown_rank.export", "dropdown_rank.evaluate.report", "dropdown_rank.model"):
        pulled = imported_by(module)
        assert "dropdown_rank.tables" in pulled, module
        assert module == "dropdown_rank.model" or "dropdown_rank.workdir" in pulled, module
        assert not {m for m in pulled if m.split(".")[1:2] in (["build"], ["beam"], ["graph"])}, (module, sorted(pulled))


def test_every_number_in_the_benchmarks_readme_and_the_readmes_performance_section_is_in_a_result_file_it_names(tmp_path):
    spec = importlib.util.spec_from_file_location("check_readme", PACKAGE.parent / "benchmarks" / "check_readme.py")
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    assert checker.check(PACKAGE.parent / "benchmarks" / "README.md") == []
    assert checker.check(PACKAGE.parent / "README.md", PACKAGE.parent / "benchmarks" / "results", only="Performance") == []
    # The checker itself: a number that no cited file holds is reported, one that is there (rounded) is not.
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text('{"rate": 12345.6, "auc": [0.73281], "peak_mb": 2140, "ratio": 0.854}')
    (tmp_path / "README.md").write_text("### X (`results/x.json`)\n\n12,346 examples/s, AUC 0.7328, and 0.7329; peak 2.1 GB "
                                        "(2,140 MB), 0.85x; a derived 1.5x; 2.1 MB.\n")
    assert [p.split(": ")[-1] for p in checker.check(tmp_path / "README.md")] == [
        "0.7329 is in none of x.json", "1.5x is in none of x.json", "2.1 MB is in none of x.json"]


MAX_FUNCTION_LINES = 100


def test_no_function_in_the_package_runs_to_100_lines():
    """A function that long mixes concerns a reader has to separate; split it where they part."""
    long = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 >= MAX_FUNCTION_LINES]
    assert not long, long
