// A readable rendering of /api/openapi.json: one section per tag, one entry per operation,
// with its parameters and request body schema. No framework and no CDN.

const el = (tag, text, cls) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
};

function schemaText(schema, components) {
  if (!schema) return "";
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return `${name}: ${JSON.stringify(components[name], null, 2)}`;
  }
  return JSON.stringify(schema, null, 2);
}

async function render() {
  const root = document.getElementById("apidoc");
  const doc = await (await fetch("/api/openapi.json", { credentials: "same-origin" })).json();
  const components = (doc.components && doc.components.schemas) || {};
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method.toUpperCase(), path, op]);
    }
  }
  root.textContent = "";
  const intro = el("p", doc.info.description);
  root.append(el("p", `Version ${doc.info.version}, OpenAPI ${doc.openapi}.`), intro);
  for (const [tag, ops] of byTag) {
    const section = el("section");
    section.append(el("h2", tag));
    for (const [method, path, op] of ops) {
      const entry = el("details");
      const summary = el("summary");
      summary.append(el("code", `${method} ${path}`), document.createTextNode(`  ${op.summary || ""}`));
      entry.append(summary);
      if (op.parameters && op.parameters.length) {
        const list = el("ul");
        for (const p of op.parameters) list.append(el("li", `${p.name} (${p.in}, ${p.schema.type})`));
        entry.append(el("h4", "Parameters"), list);
      }
      if (op.requestBody) {
        for (const [ctype, body] of Object.entries(op.requestBody.content)) {
          entry.append(el("h4", `Body (${ctype})`), el("pre", schemaText(body.schema, components)));
        }
      }
      section.append(entry);
    }
    root.append(section);
  }
}

render().catch((err) => {
  document.getElementById("apidoc").textContent = `Cannot load the description: ${err}`;
});
