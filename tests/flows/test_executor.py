"""Executing one line: references (including ``.output.key``), python nodes written for Prompt
flow, llm nodes against a scripted model, prompt nodes, variants, activate conditions, connection
overrides and the default-model fallback."""

from __future__ import annotations

import json
import sys

import pytest

from tunery.chat import Role
from tunery.errors import InvalidInput
from tunery.flows import Connection, ModelResolver, add_connection, get_connection, load_flow, shim, test_flow
from tunery.flows.executor import FlowExecutor
from tunery.serving import OpenAIChatModel, ScriptedChatModel


def test_qa_flow_line(qa_flow, factory, fake):
    result = test_flow(qa_flow, {"question": "hi", "n": "5"}, model_factory=factory)
    line = result.line
    assert line.status == "Completed", line.error
    assert line.outputs == {"answer": "fake answer!", "shout": "HI"}
    assert line.nodes["prep"].output == {"q": "HI", "n": 5}  # "5" converted to the declared int
    assert [n for n in line.nodes] == ["prep", "answer", "post"]
    messages, params = fake.calls[0]
    assert [(m.role, m.content) for m in messages] == [(Role.SYSTEM, "Answer briefly."), (Role.USER, "HI")]
    assert params.max_tokens == 16 and params.temperature == 0.2
    assert factory.calls == [("open_ai_connection", "gpt-35-turbo")]
    assert "preparing hi" in line.logs  # print() in a python node goes to the line's log
    assert line.nodes["answer"].usage == {"prompt_tokens": 3, "completion_tokens": 2}


def test_failing_python_node_fails_the_line_naming_the_node(qa_flow, factory):
    line = test_flow(qa_flow, {"question": "boom"}, model_factory=factory).line
    assert line.status == "Failed"
    assert line.error["node"] == "prep" and line.error["message"] == "ValueError: cannot prepare boom (prep.py, line 9)"
    assert "answer" not in line.nodes
    # the traceback goes through the flow's own files only, not tunery's
    assert "Traceback" in line.logs and 'prep.py", line 9, in prep' in line.logs
    assert "tunery" not in line.logs.replace(str(qa_flow), "")


def test_missing_required_input_fails_the_line(qa_flow, factory):
    line = test_flow(qa_flow, {}, model_factory=factory).line
    assert line.status == "Failed" and "flow input 'question' has no value" in line.error["message"]


def test_missing_output_key_names_node_and_field(make_flow, factory):
    root = make_flow("""
        inputs: {x: {type: string}}
        outputs: {o: {reference: "${b.output}"}}
        nodes:
        - name: a
          type: python
          source: {type: code, path: a.py}
          inputs: {x: "${inputs.x}"}
        - name: b
          type: python
          source: {type: code, path: b.py}
          inputs: {v: "${a.output.nothere}"}
    """, {"a.py": "from promptflow.core import tool\n@tool\ndef a(x):\n    return {'here': x}\n",
          "b.py": "from promptflow.core import tool\n@tool\ndef b(v):\n    return v\n"})
    line = test_flow(root, {"x": "1"}, model_factory=factory).line
    assert line.status == "Failed"
    assert (line.error["node"], line.error["field"]) == ("b", "inputs.v")
    assert "has no 'nothere'" in line.error["message"] and "{'here': '1'}" in line.error["message"]


ACTIVATE_FLOW = """
inputs:
  text: {type: string}
  loud: {type: bool, default: false}
outputs:
  yes_out: {reference: "${on_yes.output}"}
  no_out: {reference: "${on_no.output}"}
  after_yes: {reference: "${after_yes.output}"}
  merged: {reference: "${merge.output}"}
  shout: {reference: "${shout.output}"}
nodes:
- name: decide
  type: python
  source: {type: code, path: decide.py}
  inputs: {text: "${inputs.text}"}
- name: on_yes
  type: python
  source: {type: code, path: echo.py}
  inputs: {v: "${decide.output.answer}"}
  activate: {when: "${decide.output.answer}", is: "yes"}
- name: on_no
  type: python
  source: {type: code, path: echo.py}
  inputs: {v: "${decide.output.answer}"}
  activate: {when: "${decide.output.answer}", is: "no"}
- name: after_yes
  type: python
  source: {type: code, path: echo.py}
  inputs: {v: "${on_yes.output}"}
- name: merge
  type: python
  source: {type: code, path: merge.py}
  inputs: {a: "${on_yes.output}", b: "${on_no.output}"}
- name: shout
  type: prompt
  source: {type: code, path: shout.jinja2}
  inputs: {text: "${inputs.text}"}
  activate: {when: "${inputs.loud}", is: true}
"""
ACTIVATE_FILES = {
    "decide.py": "from promptflow.core import tool\n@tool\ndef decide(text):\n"
                 "    return {'answer': 'yes' if 'y' in text else 'no'}\n",
    "echo.py": "from promptflow.core import tool\n@tool\ndef echo(v):\n    return f'echo {v}'\n",
    "merge.py": "from promptflow.core import tool\n@tool\ndef merge(a, b):\n    return [a, b]\n",
    "shout.jinja2": "{{ text | upper }}!",
}


@pytest.mark.parametrize(("text", "loud", "expected", "bypassed"), [
    ("yes", "false", {"yes_out": "echo yes", "no_out": None, "after_yes": "echo echo yes",
                      "merged": ["echo yes", None], "shout": None}, {"on_no", "shout"}),
    ("nope", "true", {"yes_out": None, "no_out": "echo no", "after_yes": None, "merged": [None, "echo no"],
                      "shout": "NOPE!"}, {"on_yes", "after_yes"}),
])
def test_activate_bypasses_nodes_and_their_dependents(make_flow, factory, text, loud, expected, bypassed):
    root = make_flow(ACTIVATE_FLOW, ACTIVATE_FILES)
    line = test_flow(root, {"text": text, "loud": loud}, model_factory=factory).line
    assert line.status == "Completed", line.error
    assert line.outputs == expected
    assert {n for n, r in line.nodes.items() if r.status == "Bypassed"} == bypassed


VARIANT_FLOW = """
inputs: {q: {type: string}}
outputs: {a: {reference: "${ask.output}"}}
nodes:
- name: ask
  use_variants: true
node_variants:
  ask:
    default_variant_id: variant_0
    variants:
      variant_0:
        node:
          type: llm
          source: {type: code, path: v0.jinja2}
          inputs: {deployment_name: gpt-35-turbo, q: "${inputs.q}", max_tokens: 5}
          connection: open_ai_connection
          api: chat
      variant_1:
        node:
          type: llm
          source: {type: code, path: v1.jinja2}
          inputs: {model: gpt-4, q: "${inputs.q}", stop: ["END"], temperature: 0}
          api: completion
"""
VARIANT_FILES = {"v0.jinja2": "# system:\nvariant zero\n# user:\n{{q}}\n", "v1.jinja2": "Complete: {{q}}"}


def test_variants_select_the_node_definition(make_flow, factory, fake):
    root = make_flow(VARIANT_FLOW, VARIANT_FILES)
    test_flow(root, {"q": "hello"}, model_factory=factory)
    test_flow(root, {"q": "hello"}, model_factory=factory, variant="${ask.variant_1}")
    (m0, p0), (m1, p1) = fake.calls
    assert [m.content for m in m0] == ["variant zero", "hello"] and p0.max_tokens == 5
    # api: completion sends the rendered text as one user message
    assert [(m.role, m.content) for m in m1] == [(Role.USER, "Complete: hello")]
    assert p1.stop == ("END",) and p1.temperature == 0.0
    assert factory.calls == [("open_ai_connection", "gpt-35-turbo"), ("tunery", "gpt-4")]


def test_connection_overrides(make_flow, factory):
    root = make_flow(VARIANT_FLOW, VARIANT_FILES)
    test_flow(root, {"q": "x"}, model_factory=factory,
              connections={"ask": {"connection": "mine", "deployment_name": "tiny-random"}})
    assert factory.calls == [("mine", "tiny-random")]
    with pytest.raises(InvalidInput, match="node 'nope', which is not in the flow"):
        test_flow(root, {"q": "x"}, model_factory=factory, connections={"nope": {"connection": "c"}})
    with pytest.raises(InvalidInput, match="only connection, deployment_name, model"):
        test_flow(root, {"q": "x"}, model_factory=factory, connections={"ask": {"api_key": "k"}})


def test_bad_llm_settings_and_templates_name_node_and_field(make_flow, factory):
    root = make_flow(VARIANT_FLOW.replace("max_tokens: 5", "max_tokens: lots"), VARIANT_FILES)
    err = test_flow(root, {"q": "x"}, model_factory=factory).line.error
    assert (err["node"], err["field"]) == ("ask", "inputs.max_tokens")
    root = make_flow(VARIANT_FLOW, {**VARIANT_FILES, "v0.jinja2": "no role line {{q}}"})
    err = test_flow(root, {"q": "x"}, model_factory=factory).line.error
    assert (err["node"], err["field"]) == ("ask", "source.path") and "role line" in err["message"]


def test_default_model_answers_unknown_deployments_with_one_warning():
    loaded: list[str] = []

    def loader(name):
        loaded.append(name)
        return ScriptedChatModel(name=name)

    heard: list[str] = []
    resolver = ModelResolver("tiny-default", loader=loader, known=lambda n: n == "my-model", on_warning=heard.append)
    local = Connection("open_ai_connection")
    assert resolver(local, "gpt-35-turbo").name == "tiny-default"
    assert resolver(local, "gpt-35-turbo") is resolver(local, "gpt-35-turbo")  # built once
    assert resolver(local, "my-model").name == "my-model"
    assert resolver(local, None).name == "tiny-default"
    assert loaded == ["tiny-default", "my-model"]
    assert len(heard) == 1 and "'gpt-35-turbo' is not known to tunery; 'tiny-default' answers" in heard[0]


def test_default_model_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TUNERY_FLOW_DEFAULT_MODEL", "env-model")
    assert ModelResolver(known=lambda n: False, loader=ScriptedChatModel).resolve_name(
        Connection("c"), "gpt-4") == "env-model"
    assert ModelResolver("explicit", known=lambda n: False).default_model == "explicit"


def test_openai_connections(monkeypatch):
    add_connection("remote", "openai", "http://127.0.0.1:9/v1", "MY_KEY")
    conn = get_connection("remote")
    assert conn == Connection("remote", "openai", "http://127.0.0.1:9/v1", "MY_KEY")
    assert get_connection("open_ai_connection").type == "tunery"  # unconfigured: the local models
    resolver = ModelResolver(known=lambda n: False)
    with pytest.raises(InvalidInput, match=r"\$MY_KEY, which is not set"):
        resolver(conn, "gpt-4o")
    monkeypatch.setenv("MY_KEY", "sk-test")
    model = resolver(conn, "gpt-4o")  # an unknown name goes to the endpoint unchanged
    assert isinstance(model, OpenAIChatModel) and model.model == "gpt-4o" and model.api_key == "sk-test"
    with pytest.raises(InvalidInput, match="needs a model name"):
        resolver(conn, None)
    with pytest.raises(InvalidInput, match="needs --base-url"):
        add_connection("bad", "openai")


def test_single_node_test_runs_only_what_it_needs(qa_flow, factory, fake):
    post = test_flow(qa_flow, {"text": " given "}, node="post", model_factory=factory).line
    assert post.status == "Completed" and list(post.nodes) == ["post"] and post.nodes["post"].output == "given!"
    # the llm node, with its upstream output given by NODE.output
    ans = test_flow(qa_flow, {"prep.output": {"q": "FROM CLI"}}, node="answer", model_factory=factory).line
    assert list(ans.nodes) == ["prep", "answer"] and fake.calls[-1][0][-1].content == "FROM CLI"
    # a key naming one of the node's own inputs gives it directly: prep does not run
    own = test_flow(qa_flow, {"question": "direct"}, node="answer", model_factory=factory).line
    assert list(own.nodes) == ["answer"] and fake.calls[-1][0][-1].content == "direct"
    # otherwise the upstream nodes run from the flow inputs
    up = test_flow(qa_flow, {"question": "q1"}, node="post", model_factory=factory).line
    assert list(up.nodes) == ["prep", "answer", "post"] and up.nodes["prep"].output["q"] == "Q1"


def test_log_metric_outside_aggregation_is_ignored_with_a_warning(make_flow, factory):
    root = make_flow("""
        inputs: {x: {type: int}}
        outputs: {o: {reference: "${a.output}"}}
        nodes:
        - name: a
          type: python
          source: {type: code, path: a.py}
          inputs: {x: "${inputs.x}"}
    """, {"a.py": "from promptflow.core import tool, log_metric\n@tool\ndef a(x):\n"
                  "    log_metric('m', x)\n    return x\n"})
    ex = FlowExecutor(load_flow(root), model_factory=factory)
    assert ex.run_line({"x": 1}).status == "Completed"
    assert ex.run_aggregation([]).metrics == {}
    assert any("only aggregation nodes may log metrics" in w for w in ex.warnings)


def test_promptflow_shim_imports():
    assert shim.install()
    from promptflow import log_metric as lm1
    from promptflow import tool as tool1
    from promptflow.connections import CustomConnection
    from promptflow.core import log_metric, tool
    from promptflow.tracing import trace

    assert tool is tool1 and log_metric is lm1
    assert shim.is_tool(tool(lambda: 1)) and shim.is_tool(tool()(lambda: 1))
    assert shim.is_tool(tool(name="n", description="d")(lambda: 1))
    assert tool(len) is len  # a builtin cannot be marked, but decorating it must not fail
    assert trace(len) is len and trace()(len) is len
    assert CustomConnection(secrets={"k": "v"}).k == "v"
    assert sys.modules["promptflow"].__spec__ is not None


def test_a_python_node_calling_exit_fails_its_line(make_flow, factory):
    """SystemExit is no Exception: it once ended `tunery flow test` with no word, and in a batch
    ended the line's thread, the line failing only at its timeout (600 s)."""
    root = make_flow("""
        inputs: {x: {type: string}}
        outputs: {o: {reference: "${a.output}"}}
        nodes:
        - name: a
          type: python
          source: {type: code, path: a.py}
          inputs: {x: "${inputs.x}"}
    """, {"a.py": "import sys\nfrom promptflow.core import tool\n\n@tool\ndef a(x):\n    sys.exit(3)\n"})
    line = test_flow(root, {"x": "1"}, model_factory=factory).line
    assert line.status == "Failed" and line.error["message"] == "SystemExit: 3 (a.py, line 6)"


RESPONSE_FORMAT_FLOW = """
inputs: {q: {type: string}}
outputs: {a: {type: string, reference: "${ask.output}"}}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  inputs: {deployment_name: gpt-35-turbo, q: "${inputs.q}", response_format: %s}
  connection: open_ai_connection
  api: chat
"""


@pytest.mark.parametrize("written, sent", [
    ('{type: json_object}', {"type": "json_object"}),
    ("'{\"type\": \"json_object\"}'", {"type": "json_object"}),  # JSON text, as the studio's form writes it
    ("json_object", {"type": "json_object"}),
    ("{type: text}", None),
])
def test_an_llm_nodes_response_format_reaches_the_model(make_flow, factory, fake, written, sent):
    root = make_flow(RESPONSE_FORMAT_FLOW % written, {"ask.jinja2": "# user:\n{{q}}\n"})
    assert test_flow(root, {"q": "hi"}, model_factory=factory).line.status == "Completed"
    assert fake.calls[0][1].response_format == sent


def test_a_response_format_that_is_no_object_fails_the_line_naming_the_input(make_flow, factory):
    root = make_flow(RESPONSE_FORMAT_FLOW % "[1, 2]", {"ask.jinja2": "# user:\n{{q}}\n"})
    line = test_flow(root, {"q": "hi"}, model_factory=factory).line
    assert line.status == "Failed" and line.error["node"] == "ask"
    assert "response_format must be an object" in line.error["message"]


# the city an enum: under tool_choice required the random tiny model can only write a whole call
TOOLS_YAML = ('[{type: function, function: {name: get_time, parameters: {type: object, '
              'properties: {city: {type: string, enum: [Oslo, Lima]}}, required: [city], additionalProperties: false}}}]')


@pytest.mark.parametrize("reply, content, calls", [
    ('<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>', None,
     [("get_time", {"city": "Oslo"})]),
    ("It is late.", "It is late.", None),
    # not a valid call of an offered function: the answer is content, as the server does
    ('<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>',
     '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>', None),
])
def test_an_llm_node_with_tools_outputs_the_assistant_message(make_flow, factory, fake, reply, content, calls):
    """As Prompt flow's LLM tool: with tools the node's output is the assistant message, whose
    tool_calls a later node (python, say) can act on; tools and tool_choice reach the model."""
    fake.replies = [reply]
    root = make_flow((RESPONSE_FORMAT_FLOW % "text").replace("response_format: text",
                                                           f"tools: {TOOLS_YAML}, tool_choice: auto"),
                     {"ask.jinja2": "# user:\n{{q}}\n"})
    line = test_flow(root, {"q": "time in Oslo?"}, model_factory=factory).line
    assert line.status == "Completed", line.error
    params = fake.calls[0][1]
    assert params.tools[0]["function"]["name"] == "get_time" and params.tool_choice == "auto"
    out = line.outputs["a"]
    assert out["role"] == "assistant" and out["content"] == content
    got = None if out["tool_calls"] is None else [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                                                  for c in out["tool_calls"]]
    assert got == calls


def test_tools_given_as_json_text_and_the_older_functions_form(make_flow, factory, fake):
    as_text = json.dumps([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    root = make_flow((RESPONSE_FORMAT_FLOW % "text").replace("response_format: text", f"tools: '{as_text}'"),
                     {"ask.jinja2": "# user:\n{{q}}\n"})
    assert test_flow(root, {"q": "hi"}, model_factory=factory).line.status == "Completed"
    assert fake.calls[-1][1].tools[0]["function"]["name"] == "f"
    root = make_flow((RESPONSE_FORMAT_FLOW % "text").replace("response_format: text", "functions: [{name: f}]"),
                     {"ask.jinja2": "# user:\n{{q}}\n"})
    line = test_flow(root, {"q": "hi"}, model_factory=factory).line
    assert line.status == "Failed" and line.error["node"] == "ask" and "take tools and tool_choice" in line.error["message"]


def test_a_flow_acts_on_a_real_models_tool_call(make_flow, tiny_model):
    """End to end on tunery's engine: tool_choice required makes even the random tiny model write a
    valid call (constrained decoding), which the next node, plain Python, answers."""
    root = make_flow(f"""
inputs: {{q: {{type: string}}}}
outputs: {{a: {{type: string, reference: "${{act.output}}"}}}}
nodes:
- name: ask
  type: llm
  source: {{type: code, path: ask.jinja2}}
  inputs: {{deployment_name: tiny-random, q: "${{inputs.q}}", max_tokens: 200, tools: {TOOLS_YAML}, tool_choice: required}}
  connection: open_ai_connection
  api: chat
- name: act
  type: python
  source: {{type: code, path: act.py}}
  inputs: {{message: "${{ask.output}}"}}
""", {"ask.jinja2": "# user:\n{{q}}\n",
      "act.py": "import json\nfrom promptflow.core import tool\n\n@tool\ndef act(message):\n"
                "    call = message['tool_calls'][0]['function']\n"
                "    return call['name'] + ':' + str(sorted(json.loads(call['arguments'])))\n"})
    line = test_flow(root, {"q": "What time is it in Oslo?"}, default_model="tiny-random").line
    assert line.status == "Completed", (line.error, line.nodes["ask"].output)
    assert line.outputs["a"] == "get_time:['city']"


def test_under_tool_choice_none_a_written_call_is_content(make_flow, factory, fake):
    """As the server: tools offered with tool_choice none are not the model's to call, so a block it
    writes anyway is the answer's text, not a tool call for the next node to act on."""
    fake.replies = ['<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>']
    root = make_flow((RESPONSE_FORMAT_FLOW % "text").replace("response_format: text",
                                                           f"tools: {TOOLS_YAML}, tool_choice: none"),
                     {"ask.jinja2": "# user:\n{{q}}\n"})
    line = test_flow(root, {"q": "time in Oslo?"}, model_factory=factory).line
    assert line.status == "Completed", line.error
    assert line.outputs["a"]["tool_calls"] is None and line.outputs["a"]["content"] == fake.replies[0]


@pytest.mark.parametrize("param, inputs, field", [
    ("tools[0].function.parameters", f"tools: {TOOLS_YAML}", "inputs.tools[0].function.parameters"),
    # the node names a deployment (or a model) tunery does not know; the default model it falls back to
    # is not pulled: not the node's input
    ("model", "max_tokens: 5", "connection"),
    ("model", "model: gpt-4o", "connection"),
])
def test_a_refusal_names_the_nodes_input_only_when_it_has_it(make_flow, param, inputs, field):
    def refuse(connection, model):
        raise InvalidInput("refused", param=param)

    root = make_flow((RESPONSE_FORMAT_FLOW % "text").replace("response_format: text", inputs),
                     {"ask.jinja2": "# user:\n{{q}}\n"})
    err = test_flow(root, {"q": "hi"}, model_factory=refuse).line.error
    assert (err["node"], err["field"]) == ("ask", field)
