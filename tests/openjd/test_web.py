"""The web page's OpenJD form in Debian's Chromium against a real server: a template's
parameters shown as the controls its userInterface asks for, edited, and submitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import ui  # noqa: F401 - a fixture, re-exported

pytestmark = pytest.mark.browser


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def test_a_templates_parameters_are_shown_edited_and_submitted(ui: Any, server: Any, samples: Path) -> None:  # noqa: F811
    group = server.submit(title="shots")
    page = ui.goto(f"jobs/{group}")
    page.keyboard.press("o")
    form = page.locator("form.openjd-form")
    form.locator("textarea[name=template]").fill((samples / "ui-controls-showcase.yaml").read_text())
    field = lambda name: form.locator(f"[data-param='{name}']")  # noqa: E731
    expect()(field("LineEditControl")).to_have_value("Default line edit value.")
    # Each control as its userInterface says, grouped by groupLabel, with its label.
    assert field("MultiLineEditControl").evaluate("e => e.tagName") == "TEXTAREA"
    bounded = field("BoundedIntSpinner")
    assert (bounded.get_attribute("type"), bounded.get_attribute("min"), bounded.get_attribute("max")) == (
        "number", "-100", "100"
    )  # fmt: skip
    assert field("FloatSpinnerFixedStep").get_attribute("step") == "0.875"
    expect()(field("StringDropdown")).to_have_value("WEDNESDAY")
    assert field("IntDropdown").locator("option").all_inner_texts() == ["3", "8", "7", "2", "9", "1"]
    expect()(field("CheckBox")).to_be_checked()
    expect()(field("HiddenFieldOne")).to_have_count(0)
    expect()(form.locator("fieldset.openjd-group legend")).to_have_text(
        ["Text Controls", "Int Spinners", "Float Spinners", "Dropdown Controls", "Picker Controls"]
    )
    expect()(form.locator("[data-field=LineEditControl] .field-label")).to_have_text("Line Edit Control")
    expect()(form.locator("[data-field=InputFilePicker] .field-label")).to_have_text("Input File Picker *")
    # Required pickers empty: the preview says what is missing, and nothing can be submitted.
    preview = form.locator(".openjd-preview")
    expect()(preview).to_contain_text(
        "Values missing for required job parameters: DirectoryPicker, InputFilePicker, OutputFilePicker"
    )
    expect()(form.get_by_role("button", name="Submit")).to_be_disabled()
    field("InputFilePicker").fill("/studio/in/scene.blend")
    field("OutputFilePicker").fill("/studio/out/frame.exr")
    field("DirectoryPicker").fill("/studio/shots")
    field("LineEditControl").fill("from the page")
    field("IntDropdown").select_option("9")
    field("BoundedIntSpinner").fill("99")
    field("CheckBox").uncheck()
    expect()(preview).to_contain_text("Job Template GUI Control Showcase: 1 task")
    expect()(preview).to_contain_text("CliScript: 1 task")
    ui.shot("openjd-form")
    form.locator("[name=priority]").fill("1500")
    form.get_by_role("button", name="Submit").click()
    expect()(page.locator(".toast-ok")).to_contain_text("Submitted OpenJD job")
    expect()(ui.row("Job Template GUI Control Showcase")).to_have_count(1)
    [job] = server.api("GET", f"/api/jobs/{group}/children")
    assert (job["priority"], job["affinity"]) == (1500, "openjd")
    stored = server.worker_call("openjd", {"name": "w", "job": job["id"]})["parameters"]
    assert {k: v["value"] for k, v in stored.items()} == {
        "LineEditControl": "from the page",
        "MultiLineEditControl": "This is a\ntext file with\nmultiple lines.\n",
        "IntSpinner": "42",
        "BigStepIntSpinner": "123",
        "BoundedIntSpinner": "99",
        "FloatSpinner": "1234.56789",
        "FloatSpinnerOneDecimal": "100000.01",
        "FloatSpinnerFixedStep": "0.0",
        "StringDropdown": "WEDNESDAY",
        "IntDropdown": "9",
        "HiddenFieldOne": "10",  # hidden: its default
        "FloatDropdown": "3.26",
        "InputFilePicker": "/studio/in/scene.blend",
        "OutputFilePicker": "/studio/out/frame.exr",
        "DirectoryPicker": "/studio/shots",
        "CheckBox": "False",
        "HiddenFieldTwo": "This is a hidden string parameter",
    }


def test_a_template_file_and_its_problems(ui: Any, server: Any, samples: Path, tmp_path: Path) -> None:  # noqa: F811
    page = ui.goto("jobs")
    ui.button("+ Add").click()
    page.locator(".panel-head").get_by_role("tab", name="OpenJD").click()
    form = page.locator("form.openjd-form")
    form.locator("input[name=template-file]").set_input_files(str(samples / "ffmpeg.yaml"))
    expect()(form.locator("[data-param=FPS]")).to_have_value("24")
    expect()(form.locator("fieldset.openjd-group legend")).to_have_text(["Files", "FrameInfo"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "specificationVersion: jobtemplate-2023-09\nname: Bad\nsteps:\n  - name: A\n    scrip: {}\n"
    )
    form.locator("input[name=template-file]").set_input_files(str(bad))
    problems = form.locator(".openjd-problems li")
    message = "Must specify either 'script' or a script interpreter (python, bash, cmd, powershell, node)."
    expect()(problems).to_have_text([f"line 4: steps[0]: {message}"])
    expect()(form.get_by_role("button", name="Submit")).to_be_disabled()
    assert server.api("GET", "/api/jobs") == []
