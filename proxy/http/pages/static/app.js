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

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", () => copyText(b)));
  const form = document.getElementById("calculator");
  if (form) calculator(form);
});
