import json
from types import SimpleNamespace

import pytest

from wasmhook import Config, ConfigError, Event, Outcome, Output, PluginError, log
from wasmhook import _glue


# -- Event -------------------------------------------------------------------
def test_event_defaults_and_body_forms():
    ev = Event(event_type="push")
    assert (ev.id, ev.source, ev.received_at, ev.headers, ev.body) == ("evt_test", "test", 0, [], b"")
    assert Event(body="héllo").body == "héllo".encode()
    assert Event(body=b"\x00\xff").body == b"\x00\xff"
    ev = Event(body={"a": "ü"})
    assert ev.body == '{"a":"ü"}'.encode() and ev.header("Content-Type") == "application/json"
    assert Event(body=[1], headers={"content-type": "text/x"}).header("content-type") == "text/x"


def test_headers_case_insensitive_set_and_remove():
    ev = Event(headers=[("X-GitHub-Event", "push"), ("x-github-event", "dup")])
    assert ev.headers[0] == ("x-github-event", "push") and ev.header("X-GITHUB-EVENT") == "push"
    ev.set_header("X-GitHub-Event", "ping")
    assert ev.headers == [("x-github-event", "ping")]
    ev.remove_header("x-github-EVENT")
    assert ev.header("x-github-event") is None


def test_json_text_and_errors():
    ev = Event(body='{"n": 3}')
    assert ev.json() == {"n": 3} and ev.text() == '{"n": 3}'
    with pytest.raises(ValueError, match="body is not JSON"):
        Event(body="nope").json()
    with pytest.raises(ValueError, match="not UTF-8"):
        Event(body=b"\xff").text()
    ev.set_json({"b": [1, 2]})
    assert ev.body == b'{"b":[1,2]}' and ev.header("content-type") == "application/json"


def test_with_methods_chain_and_copy():
    base = Event(event_type="push")
    ev = base.with_header("X-A", "1").with_json({"k": "v"}).with_body("raw")
    assert ev.header("x-a") == "1" and ev.body == b"raw"
    assert base.headers == [] and base.body == b""
    assert base.replace(id="e2").id == "e2" and base.id == "evt_test"


def test_from_dict_sample_shape():
    ev = Event.from_dict({"source": "github", "type": "push", "id": "evt_1",
                          "headers": {"Content-Type": "application/json"}, "body": {"a": 1}})
    assert (ev.source, ev.event_type, ev.id, ev.json()) == ("github", "push", "evt_1", {"a": 1})
    with pytest.raises(ValueError, match="unknown event keys"):
        Event.from_dict({"typ": "push"})


# -- Outcome -----------------------------------------------------------------
def test_outcome_constructors_and_accessors():
    ev = Event(event_type="push")
    keep = Outcome.keep(ev)
    assert keep.is_emit and not keep.is_drop and keep.events == [ev] and keep.targets == []
    drop = Outcome.drop("no")
    assert drop.is_drop and drop.drop_reason == "no" and drop.events == []
    split = Outcome.emit([ev, ev.replace(id="2"), Output(ev, ["audit"])])
    assert len(split.events) == 3 and split.targets == ["audit"]
    assert Outcome.emit([]).is_emit and Outcome.emit([]).events == []
    route = Outcome.route(ev, ["ci", "audit", "ci"])
    assert route.targets == ["ci", "audit"] and Outcome.route(ev, "ci").targets == ["ci"]
    assert Outcome.keep(ev) == Outcome.keep(ev)


def test_outcome_misuse_is_a_clear_error():
    with pytest.raises(TypeError, match="Outcome.keep"):
        Outcome.drop(Event())
    with pytest.raises(TypeError, match="not an Event"):
        Outcome.emit([{"a": 1}])


# -- Config ------------------------------------------------------------------
def test_config_get_list_and_types():
    cfg = Config.from_dict({"allow": " push, release,,ping ", "min": 5, "ratio": "0.5",
                            "on": True, "off": "No"})
    assert cfg.get("allow").startswith(" push") and cfg.get("x") is None
    assert cfg.get_or("x", "d") == "d" and cfg["min"] == "5" and "min" in cfg
    assert cfg.list("allow") == ["push", "release", "ping"] and cfg.list("x") == []
    assert cfg.int("min") == 5 and cfg.int("x", default=7) == 7
    assert cfg.float("ratio") == 0.5 and cfg.bool("on") is True and cfg.bool("off") is False
    assert cfg.bool("x", default=False) is False
    assert Config([("a", "1"), ("a", "2")]).get("a") == "1"


def test_config_errors_name_the_key_and_value():
    cfg = Config.from_dict({"min": "abc", "strict": "maybe"})
    with pytest.raises(ConfigError, match=r"config 'min' must be an integer, got 'abc'"):
        cfg.int("min")
    with pytest.raises(ConfigError, match=r"config 'strict' must be true/false.*got 'maybe'"):
        cfg.bool("strict")
    with pytest.raises(ConfigError, match=r"config 'max' is required but not set"):
        cfg.int("max")
    with pytest.raises(ConfigError, match=r"config 'max' is required"):
        cfg["max"]
    assert isinstance(ConfigError("x"), ValueError)


# -- log ---------------------------------------------------------------------
def test_log_goes_to_stderr_natively(capsys):
    log.warn("careful")
    assert capsys.readouterr().err == "[warn] careful\n"


# -- glue, against componentize-py's own generated types ----------------------
class FakeHost:
    def __init__(self, host, config=()):
        self.Level, self.lines, self._config = host.Level, [], list(config)

    def log(self, level, message):
        self.lines.append((level.name, message))

    def config(self):
        return self._config


def call(bindings, handler, config=(), **event):
    types, host, err = bindings
    fake = FakeHost(host, config)
    wire = types.Event(**{"id": "e1", "source": "s", "event_type": "push", "received_at": 5,
                          "headers": [("content-type", "application/json")], "body": b'{"n":1}',
                          **event})
    try:
        return _glue.handle(handler, wire, types=types, host=fake, err=err), fake
    finally:
        log._sink = None


def error_of(bindings, handler, **kw):
    with pytest.raises(bindings[2]) as e:
        call(bindings, handler, **kw)
    return e.value.value


def test_glue_keep_round_trips(bindings):
    types = bindings[0]
    out, _ = call(bindings, lambda ev, cfg: Outcome.keep(ev))
    assert isinstance(out, types.Outcome_Emit)
    [o] = out.value
    assert o.targets == [] and o.event == types.Event("e1", "s", "push", 5,
                                                      [("content-type", "application/json")], b'{"n":1}')


def test_glue_drop_route_config_and_log(bindings):
    types = bindings[0]

    def handler(ev, cfg):
        log.info(f"min={cfg.int('min')}")
        return Outcome.drop("low") if ev.json()["n"] < cfg.int("min") else Outcome.route(ev, ["a"])

    out, fake = call(bindings, handler, config=[("min", "2")])
    assert out == types.Outcome_Drop("low") and fake.lines == [("INFO", "min=2")]
    out, _ = call(bindings, handler, config=[("min", "0")])
    assert out.value[0].targets == ["a"]


def test_glue_exception_is_one_readable_line(bindings):
    def handler(ev, cfg):
        return Outcome.drop("x") if ev.json()["n"] < cfg.int("min") else None

    msg = error_of(bindings, handler)
    assert msg.startswith("ConfigError: config 'min' is required but not set (at test_sdk.py:")
    msg = error_of(bindings, lambda ev, cfg: 1 / 0)
    assert msg.startswith("ZeroDivisionError: division by zero (at test_sdk.py:")
    def lazy(ev, cfg):
        import no_such_module_here  # noqa: F401
    assert error_of(bindings, lazy).endswith("import modules at the top of plugin.py: the build"
                                             " snapshots them, the sandbox has no files")
    assert error_of(bindings, lambda ev, cfg: Event(body="x").json()).startswith(
        "ValueError: body is not JSON: Expecting value")


def test_glue_wrong_return_types(bindings):
    def handle(ev, cfg):
        return None
    assert error_of(bindings, handle).startswith("test_sdk.handle() returned None, not an Outcome: return")
    assert "returned an object of type Event, not an Outcome" in error_of(bindings, lambda ev, cfg: ev)

    def bad_body(ev, cfg):
        ev.body = {"a": 1}
        return Outcome.keep(ev)
    assert error_of(bindings, bad_body) == (
        "emitted event 0: body must be bytes, got dict (use ev.set_json(value) or ev.set_body(text))")


def test_glue_plugin_error_is_verbatim(bindings):
    def handler(ev, cfg):
        raise PluginError("signature mismatch")
    assert error_of(bindings, handler) == "signature mismatch"


def test_glue_non_ascii_round_trips(bindings):
    body = json.dumps({"msg": "Grüße ✓ 日本"}, ensure_ascii=False).encode()
    out, _ = call(bindings, lambda ev, cfg: Outcome.keep(ev.with_json(ev.json())), body=body)
    assert json.loads(out.value[0].event.body) == {"msg": "Grüße ✓ 日本"}
    assert out.value[0].event.body == body.replace(b": ", b":")



def test_a_plugin_without_handle_fails_the_build_with_what_to_write():
    import types as pytypes

    from wasmhook import _glue

    module = pytypes.ModuleType("plugin")
    with pytest.raises(SystemExit, match=r"plugin\.py must define a function handle"):
        _glue.check_handler(module)
    module.handle = lambda ev, cfg: None
    _glue.check_handler(module)
