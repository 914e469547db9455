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


def test_platform_fit_reports_each_profile() -> None:
    from wakeword.params import Params
    from wakeword.size import platform_fit

    platforms = Params().deploy.platforms
    assert set(platforms) == {"esp32_s3", "rpi_pico", "nano33_ble"}
    fit = platform_fit(40048, 26272, platforms)  # the demo run's measured model
    assert set(fit) == set(platforms)
    for row in fit.values():
        assert set(row) == {"fits", "flash_kb", "ram_kb", "max_flash_kb", "max_ram_kb", "flash_share_of_device",
                            "ram_share_of_device"}
        assert row["fits"] is True and row["flash_kb"] == 39.11 and row["ram_kb"] == 25.66
        assert (row["max_flash_kb"], row["max_ram_kb"]) == (64, 48)
    assert fit["esp32_s3"]["flash_share_of_device"] == round(40048 / (4096 * 1024), 4)
    assert fit["rpi_pico"]["ram_share_of_device"] == round(26272 / (264 * 1024), 4)
    assert fit["nano33_ble"]["flash_share_of_device"] == round(40048 / (1024 * 1024), 4)
    # limits are inclusive and in bytes: exactly 48 KB of RAM fits, one byte more does not
    assert platform_fit(1000, 48 * 1024, platforms)["rpi_pico"]["fits"] is True
    assert platform_fit(1000, 48 * 1024 + 1, platforms)["rpi_pico"]["fits"] is False
    assert platform_fit(64 * 1024 + 1, 1000, platforms)["esp32_s3"]["fits"] is False


def test_zero_target_means_only_the_device_limits() -> None:
    from wakeword.size import platform_fit

    board = {"b": {"name": "Board", "flash_kb": 1024, "ram_kb": 256, "max_flash_kb": 0, "max_ram_kb": 0}}
    assert platform_fit(900 * 1024, 200 * 1024, board)["b"]["fits"] is True
    assert platform_fit(1025 * 1024, 10, board)["b"]["fits"] is False
    assert platform_fit(10, 257 * 1024, board)["b"]["fits"] is False
    with pytest.raises(ValueError, match="must be >= 0"):
        platform_fit(-1, 0, board)


def test_fail_on_exceed_names_the_platform_and_the_number(caplog: pytest.LogCaptureFixture) -> None:
    from wakeword.params import Params
    from wakeword.size import PlatformLimitError, enforce_platform_limits

    platforms = Params().deploy.platforms
    ram = 50 * 1024 + 300  # 50.29 KB: over every default 48 KB target
    assert enforce_platform_limits(40048, 26272, platforms, fail_on_exceed=True) == []
    with caplog.at_level("WARNING"):
        lines = enforce_platform_limits(40048, ram, platforms, fail_on_exceed=False)
    assert len(lines) == 3 and "model does not fit Raspberry Pi Pico" in caplog.text
    with pytest.raises(PlatformLimitError) as info:
        enforce_platform_limits(40048, ram, platforms, fail_on_exceed=True)
    msg = str(info.value)
    for fragment in ("ESP32-S3 (deploy.platforms.esp32_s3)", "Raspberry Pi Pico (deploy.platforms.rpi_pico)",
                     "RAM 50.29 KB (51500 bytes) > max_ram_kb 48", "deploy.fail_on_exceed"):
        assert fragment in msg, msg
    assert "flash " not in msg  # flash (39.11 KB) is within every target, so only RAM is named
