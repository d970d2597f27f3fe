"""Options shared by several sub-commands."""

from calframe.cli import main


def test_type_option_must_be_glob_equals_type(tmp_path, capsys):
    (tmp_path / "night").mkdir()
    for command in (["inventory"], ["run", "-o", str(tmp_path / "out")]):
        code = main([*command, str(tmp_path / "night"), "--type", "data.edf"])
        assert code == 2
        assert "is not GLOB=TYPE" in capsys.readouterr().err
