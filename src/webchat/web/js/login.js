// The sign-in page: POST /api/auth/login, then back to where the visitor was going.

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const submit = document.getElementById("login-submit");

// Only a path of this server: "/..." but not "//host" (an open redirect would send a signed-in user
// to another site).
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError("Enter your username and password.");
    return;
  }
  submit.disabled = true;
  showError("");
  try {
    const response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (response.ok) {
      location.assign(nextPath());
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 409 && body && body.code === "local_mode") {
      location.assign(nextPath());
      return;
    }
    showError((body && body.error) || `Sign-in failed (${response.status}).`);
    form.password.select();
  } catch (err) {
    showError(`The server did not answer (${err.message || err}).`);
  } finally {
    submit.disabled = false;
  }
});
