// The login page: posts the credentials as JSON, then goes where the user was heading.
// The session cookie is HttpOnly: this script never sees it.

const form = document.getElementById("login");
const error = document.getElementById("error");
const submit = document.getElementById("submit");
const params = new URLSearchParams(location.search);

/** A path on this site only: never follow `next` to another origin. */
function safeNext(value) {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) return "/";
  return value;
}

const next = safeNext(params.get("next"));
document.getElementById("next").value = next;

function showError(message) {
  error.textContent = message; // textContent: the server's words are never parsed as HTML
  error.hidden = !message;
}

showError(params.get("error") || "");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  submit.disabled = true;
  try {
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        user: document.getElementById("user").value.trim(),
        password: document.getElementById("password").value,
      }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.ok) {
      location.replace(next);
      return;
    }
    let message = `login failed (HTTP ${response.status})`;
    try {
      const data = await response.json();
      if (data && data.error) message = String(data.error);
    } catch {
      // not JSON: keep the generic message
    }
    showError(message);
    document.getElementById("password").select();
  } catch {
    showError("the server is unreachable");
  } finally {
    submit.disabled = false;
  }
});
