import re

from pipeline.models.efficientnet_lite0 import labels

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_label_file_has_1000_distinct_chinese_lines() -> None:
    lines = labels()
    assert len(lines) == 1000
    assert len(set(lines)) == 1000, [line for line in lines if lines.count(line) > 1]
    assert all(CJK.search(line) for line in lines)
    assert all(line == line.strip() and line for line in lines)


def test_anchor_translations_and_repeated_english_names_are_told_apart() -> None:
    lines = labels()
    anchors = {281: "虎斑猫", 285: "埃及猫", 967: "浓缩咖啡", 657: "导弹", 698: "宫殿", 985: "雏菊"}
    for index, label in anchors.items():
        assert lines[index] == label
    # ImageNet repeats "crane" (bird / machine) and "maillot" (two swimsuits)
    assert lines[134] != lines[517]
    assert lines[638] != lines[639]
