// Text the user can copy: the CLI command equivalent to a launch, and per running model the
// same request through curl, the openai SDK, xinference-client and the Rust crate.

/** `value` quoted for a POSIX shell when it needs it. */
export function shellQuote(value) {
  const s = String(value);
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The `xinference launch` command of a launch request (the body of `POST /v1/models`).
 * Options the CLI has no flag for are listed in a comment: they go through the API.
 */
export function cliCommand(request, endpoint) {
  const flags = [
    ["--model-name", request.model_name],
    ["--model-type", request.model_type && request.model_type !== "LLM" ? request.model_type : null],
    ["--model-engine", request.model_engine],
    ["--model-format", request.model_format],
    ["--size-in-billions", request.model_size_in_billions],
    ["--quantization", request.quantization],
    ["--replica", request.replica && Number(request.replica) !== 1 ? request.replica : null],
    ["--model-uid", request.model_uid],
    ["--model-path", request.model_path],
  ];
  const parts = ["xinference launch"];
  if (endpoint) parts.push(`--endpoint ${shellQuote(endpoint)}`);
  for (const [flag, value] of flags) {
    if (value !== null && value !== undefined && value !== "") parts.push(`${flag} ${shellQuote(value)}`);
  }
  const known = new Set([
    "model_name", "model_type", "model_engine", "model_format", "model_size_in_billions",
    "quantization", "replica", "model_uid", "model_path",
  ]);
  const rest = Object.keys(request).filter((k) => !known.has(k) && request[k] !== undefined);
  let text = parts.join(" \\\n  ");
  if (rest.length) text += `\n# Not CLI flags (sent by the API only): ${rest.join(", ")}`;
  return text;
}

function pyString(s) {
  return JSON.stringify(String(s));
}

/** The request each capability's snippets make, by the model's type and abilities. */
function kindOf(description) {
  const type = description.model_type || "LLM";
  const abilities = description.model_ability || [];
  if (type === "LLM") return abilities.includes("chat") ? "chat" : "generate";
  if (type === "embedding") return "embed";
  if (type === "rerank") return "rerank";
  if (type === "image") return "image";
  if (type === "audio") return "audio";
  return "chat";
}

/** `{curl, openai, xinference, rust}` snippets calling model `uid` on the server at `base`. */
export function apiSnippets(uid, description, base) {
  const kind = kindOf(description);
  const auth = description.authOn ? ` \\\n  -H "Authorization: Bearer $XINFERENCE_API_KEY"` : "";
  const keyPy = description.authOn ? `os.environ["XINFERENCE_API_KEY"]` : `"not-needed"`;
  const importOs = description.authOn ? "import os\n" : "";
  const xinfKey = description.authOn ? `, api_key=os.environ["XINFERENCE_API_KEY"]` : "";
  const rustKey = description.authOn ? `Some(std::env::var("XINFERENCE_API_KEY")?)` : "None";
  const u = pyString(uid);
  const out = {};
  switch (kind) {
    case "chat":
      out.curl = `curl ${base}/v1/chat/completions${auth} \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify({ model: uid, messages: [{ role: "user", content: "Hello!" }] }))}`;
      out.openai = `${importOs}from openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=${keyPy})\nanswer = client.chat.completions.create(\n    model=${u},\n    messages=[{"role": "user", "content": "Hello!"}],\n)\nprint(answer.choices[0].message.content)`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nanswer = model.chat(messages=[{"role": "user", "content": "Hello!"}])\nprint(answer["choices"][0]["message"]["content"])`;
      out.rust = `use xinference::{ChatCompletionRequest, ChatMessage, Client};\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet llm = client.get_model(${u}).await?.into_llm()?;\nlet answer = llm\n    .chat(ChatCompletionRequest::new([ChatMessage::user("Hello!")]))\n    .await?;\nprintln!("{}", answer.choices[0].message.content.as_deref().unwrap_or(""));`;
      break;
    case "generate":
      out.curl = `curl ${base}/v1/completions${auth} \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify({ model: uid, prompt: "Once upon a time", max_tokens: 32 }))}`;
      out.openai = `${importOs}from openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=${keyPy})\nanswer = client.completions.create(model=${u}, prompt="Once upon a time", max_tokens=32)\nprint(answer.choices[0].text)`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nprint(model.generate("Once upon a time", generate_config={"max_tokens": 32}))`;
      out.rust = `use xinference::{Client, CompletionRequest};\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet llm = client.get_model(${u}).await?.into_llm()?;\nlet answer = llm.generate(CompletionRequest::new("Once upon a time")).await?;\nprintln!("{}", answer.choices[0].text);`;
      break;
    case "embed":
      out.curl = `curl ${base}/v1/embeddings${auth} \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify({ model: uid, input: ["What is the capital of France?"] }))}`;
      out.openai = `${importOs}from openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=${keyPy})\nresult = client.embeddings.create(model=${u}, input=["What is the capital of France?"])\nprint(len(result.data[0].embedding))`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nresult = model.create_embedding(["What is the capital of France?"])\nprint(len(result["data"][0]["embedding"]))`;
      out.rust = `use xinference::Client;\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet model = client.get_model(${u}).await?.into_embedding()?;\nlet result = model.create_embedding("What is the capital of France?").await?;\nprintln!("{}", result.data[0].embedding.len());`;
      break;
    case "rerank":
      out.curl = `curl ${base}/v1/rerank${auth} \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify({ model: uid, query: "A man is eating pasta.", documents: ["A man is eating food.", "A monkey is playing drums."] }))}`;
      out.openai = `# The openai SDK has no rerank call; use the HTTP API (curl) or xinference-client.`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nresult = model.rerank(["A man is eating food.", "A monkey is playing drums."], "A man is eating pasta.")\nprint(result["results"])`;
      out.rust = `use xinference::{Client, RerankRequest};\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet model = client.get_model(${u}).await?.into_rerank()?;\nlet result = model\n    .rerank(RerankRequest::new("A man is eating pasta.", ["A man is eating food.", "A monkey is playing drums."]))\n    .await?;\nprintln!("{:?}", result.results);`;
      break;
    case "image":
      out.curl = `curl ${base}/v1/images/generations${auth} \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify({ model: uid, prompt: "a red fox in the snow", size: "512x512", response_format: "b64_json" }))}`;
      out.openai = `${importOs}from openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=${keyPy})\nresult = client.images.generate(model=${u}, prompt="a red fox in the snow", size="512x512", response_format="b64_json")\nprint(len(result.data[0].b64_json))`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nresult = model.text_to_image("a red fox in the snow", size="512*512", response_format="b64_json")\nprint(len(result["data"][0]["b64_json"]))`;
      out.rust = `use xinference::{Client, ImageGenerationRequest};\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet model = client.get_model(${u}).await?.into_image()?;\nlet result = model\n    .text_to_image(ImageGenerationRequest::new("a red fox in the snow"))\n    .await?;\nprintln!("{} image(s)", result.data.len());`;
      break;
    case "audio":
      out.curl = `curl ${base}/v1/audio/transcriptions${auth} \\\n  -F model=${shellQuote(uid)} \\\n  -F file=@speech.wav`;
      out.openai = `${importOs}from openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", api_key=${keyPy})\nwith open("speech.wav", "rb") as f:\n    result = client.audio.transcriptions.create(model=${u}, file=f)\nprint(result.text)`;
      out.xinference = `${importOs}from xinference_client import RESTfulClient\n\nclient = RESTfulClient("${base}"${xinfKey})\nmodel = client.get_model(${u})\nwith open("speech.wav", "rb") as f:\n    print(model.transcriptions(f.read())["text"])`;
      out.rust = `use xinference::Client;\n\nlet client = Client::remote("${base}", ${rustKey})?;\nlet model = client.get_model(${u}).await?.into_audio()?;\nlet result = model.transcriptions(std::fs::read("speech.wav")?).await?;\nprintln!("{}", result.text);`;
      break;
  }
  return out;
}
