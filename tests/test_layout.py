"""Data flows one way: no module imports a later stage (see dropdown_rank/__init__.py)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dropdown_rank"
# Stage of every top-level module or subpackage, in the order data flows through them.
STAGES = ["_env", "_io", "logs", "split", "vocab", "graph", "counters", "features", "records", "samples", "build", "beam", "dataset", "layers", "model", "optimizers", "cluster", "train",
          "evaluate", "export", "cli"]
PARALLEL = {"evaluate": STAGES.index("evaluate"), "export": STAGES.index("evaluate")}  # both read a trained run; neither needs the other


def stage_of(module: str) -> int:
    if module == "dropdown_rank":
        return 0
    name = module.split(".")[1]
    assert name in STAGES, f"{module}: add it to STAGES in {__file__} at its place in the data flow"
    return PARALLEL.get(name, STAGES.index(name))


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dropdown_rank"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("dropdown_rank"))


def test_no_module_imports_a_later_stage():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("dropdown_rank",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for target in imports(path):
            if stage_of(target) > stage_of(module) or (stage_of(target) == stage_of(module) and target.split(".")[:2] != module.split(".")[:2] and module != "dropdown_rank"):
                offenders.append(f"{module} imports {target}")
    assert not offenders, offenders
