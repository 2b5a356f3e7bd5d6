"""A ppmi.toml with a wrong type and a wrong value: both are reported in one run, naming the file."""

import pytest

from ppmi_build.config import load_settings
from ppmi_build.errors import ConfigError


def test_type_and_value_problems_of_one_file_come_together(tmp_path):
    cfg = tmp_path / "ppmi.toml"
    cfg.write_text('[plugin]\nkind = "asembly"\n\n[identity]\nversion = "two"\nfic_target = "graph"\n')
    before = cfg.read_bytes()
    with pytest.raises(ConfigError) as ei:
        load_settings(tmp_path)
    msg = ei.value.message
    assert msg.startswith(f"{cfg} has 3 problems:")
    assert "[identity] version = \"two\" is a string" in msg
    assert "[plugin] kind = 'asembly'; use \"assembly\" or \"package\"" in msg
    assert "[identity] fic_target = 'graph'; use \"app\" or \"uami\"" in msg
    assert ei.value.exit_code == 2 and cfg.read_bytes() == before


def test_one_value_problem_names_the_file(tmp_path):
    (tmp_path / "ppmi.toml").write_text('[plugin]\nkind = "asembly"\n')
    with pytest.raises(ConfigError, match=r"ppmi\.toml: \[plugin\] kind = 'asembly'; use \"assembly\" or"):
        load_settings(tmp_path)
