import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]
WIT = SDK.parent / "wit"  # plugin-sdk/wit: the contract itself
sys.path.insert(0, str(SDK))


@pytest.fixture(scope="session")
def bindings(tmp_path_factory):
    """componentize-py's stub bindings for the real WIT: the same generated
    types (Event, Output, Outcome_Drop, Outcome_Emit, Err) the component uses."""
    out = tmp_path_factory.mktemp("bindings")
    exe = Path(sys.executable).with_name("componentize-py")
    subprocess.run([str(exe), "-d", str(WIT), "-w", "plugin", "bindings", str(out)], check=True)
    sys.path.insert(0, str(out))
    from componentize_py_types import Err
    from wit_world.imports import host, types
    return types, host, Err
