"""The C array for firmware: it holds exactly the model's bytes and compiles."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wakeword.deploy import c_array_sources


def test_c_array_round_trips_the_bytes() -> None:
    data = bytes(range(256)) * 3 + b"\x00\xff\x10"
    header, source = c_array_sources(data, 12345)
    body = source[source.index("{") + 1 : source.index("};")]
    parsed = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert parsed == data
    assert f"g_wakeword_model_data_len = {len(data)};" in source
    assert "G_WAKEWORD_MODEL_TENSOR_ARENA_SIZE = 12345;" in header
    assert "alignas(16)" in source


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler on this machine")
def test_c_array_compiles_and_links(tmp_path: Path) -> None:
    data = b"TFL3" + bytes(range(100))
    header, source = c_array_sources(data, 2048)
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(source)
    (tmp_path / "main.cc").write_text(
        '#include "model_data.h"\n#include <cstdio>\n'
        "int main() { std::printf(\"%zu %zu %d\", g_wakeword_model_data_len, "
        "G_WAKEWORD_MODEL_TENSOR_ARENA_SIZE, g_wakeword_model_data[4 + 99]); return 0; }\n"
    )
    subprocess.run(["g++", "-std=c++17", "-o", "prog", "main.cc", "model_data.cc"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "prog")], capture_output=True, text=True, check=True).stdout
    assert out == f"{len(data)} 2048 99"


def test_recall_drop_check() -> None:
    from wakeword.deploy import FidelityError, check_recall_drop

    assert check_recall_drop({"recall_at_target": 0.80}, {"recall_at_target": 0.78}, 0.05) == pytest.approx(0.02)
    assert check_recall_drop({"recall_at_target": 0.80}, {"recall_at_target": 0.85}, 0.0) == pytest.approx(-0.05)
    with pytest.raises(FidelityError, match=r"0\.700, 0\.100 below the float model's 0\.800.*max_recall_drop"):
        check_recall_drop({"recall_at_target": 0.80}, {"recall_at_target": 0.70}, 0.05)
