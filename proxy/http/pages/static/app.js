// CheapLM dashboard: the copy buttons and the top-up calculator. A file, not inline
// script: the pages' Content-Security-Policy allows scripts from this site only.
"use strict";

function copyText(button) {
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent;
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 2000); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectText(source));
  } else {
    selectText(source);
    if (document.execCommand && document.execCommand("copy")) done();
  }
}

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function calculator(form) {
  const pay = form.querySelector("#pay");
  const value = form.querySelector("#value");
  const multiplier = Number(form.dataset.multiplier);
  const update = () => {
    const paid = Number(pay.value);
    value.textContent = paid >= 1 && paid <= 500 ? (paid * multiplier).toFixed(6) : "pick $1 to $500";
  };
  pay.addEventListener("input", update);
}

// The top-up page: "you get" by the rule the server renders (the multiplier, then the
// highest bonus step reached, in micro-USD, rounded half up once), and the card payment:
// POST /api/topup/checkout, then off to the payment page it names.
function topup(section) {
  const rule = JSON.parse(section.dataset.rule);
  const min = Number(section.dataset.min), max = Number(section.dataset.max);
  const slider = section.querySelector("#amount-slider");
  const amount = section.querySelector("#amount");
  const youGet = section.querySelector("#you-get");
  const creditFor = (cents) => {
    const paid = cents * 10000;
    let bonus = 0;
    for (const [at, extra] of rule.bonus) if (paid >= at) bonus = extra;
    return Math.round(paid * Number(rule.multiplier)) + bonus;
  };
  const cents = () => {
    const value = Number(amount.value), whole = Math.round(value * 100);
    const ok = amount.value !== "" && Math.abs(value * 100 - whole) < 1e-6 && whole >= min * 100 && whole <= max * 100;
    return ok ? whole : null;
  };
  const show = () => {
    const paid = cents();
    youGet.textContent = paid === null ? `pick $${min} to $${max}` : (creditFor(paid) / 1e6).toFixed(6);
    return paid;
  };
  slider.addEventListener("input", () => { amount.value = slider.value; show(); });
  amount.addEventListener("input", () => { if (show() !== null) slider.value = amount.value; });
  const button = section.querySelector("#pay");
  if (!button) return;
  const error = section.querySelector("#pay-error");
  const refuse = (message) => { error.textContent = message; error.hidden = false; button.disabled = false; };
  section.querySelector("#pay-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const paid = show();
    if (paid === null) return refuse(`Pick an amount from $${min} to $${max}, in whole cents`);
    button.disabled = true;
    error.hidden = true;
    try {
      const answer = await fetch("/api/topup/checkout", {
        method: "POST", credentials: "same-origin", headers: {"content-type": "application/json"},
        body: JSON.stringify({amount_usd: paid / 100})});
      const body = await answer.json();
      if (answer.ok && body.url) return window.location.assign(body.url);
      refuse((body.error && body.error.message) || "The payment could not start: try again");
    } catch (failure) {
      refuse("The payment could not start: " + failure.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", () => copyText(b)));
  const form = document.getElementById("calculator");
  if (form) calculator(form);
  const section = document.getElementById("topup");
  if (section) topup(section);
});
