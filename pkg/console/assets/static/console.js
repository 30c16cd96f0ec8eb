// feedbackd console: header rows, auth sections, copy buttons, job progress.
// The pages work without it; it only adds conveniences.
"use strict";
document.documentElement.classList.add("js");

function showAuth() {
  const checked = document.querySelector('input[name="authType"]:checked');
  const type = checked ? checked.value : "none";
  document.querySelectorAll(".auth-fields").forEach(function (el) {
    el.hidden = el.dataset.auth !== type;
  });
}

function wireHeaderRow(row) {
  const remove = row.querySelector(".remove-header");
  if (remove) {
    remove.addEventListener("click", function () {
      const rows = document.querySelectorAll(".header-row");
      if (rows.length > 1) {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        const input = next && next.querySelector("input");
        if (input) input.focus();
      } else {
        row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
      }
    });
  }
}

let headerCount = 1000;
function addHeader() {
  const rows = document.getElementById("header-rows");
  const last = rows.querySelector(".header-row:last-child");
  const row = last.cloneNode(true);
  headerCount++;
  row.querySelectorAll("input").forEach(function (input) {
    input.value = "";
    const id = (input.name === "headerName" ? "hn" : "hv") + headerCount;
    const label = row.querySelector('label[for="' + input.id + '"]');
    if (label) label.htmlFor = id;
    input.id = id;
  });
  rows.appendChild(row);
  wireHeaderRow(row);
  row.querySelector("input").focus();
}

function pollJob(el) {
  const url = el.dataset.poll;
  const tick = function () {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (p) {
        el.querySelectorAll("[data-field]").forEach(function (f) {
          const v = p[f.dataset.field];
          if (v !== undefined) f.textContent = String(v);
        });
        const bar = document.getElementById("job-bar");
        if (bar) { bar.max = p.total || 1; bar.value = p.scanned; }
        if (p.state === "running") setTimeout(tick, 500);
      })
      .catch(function () { setTimeout(tick, 2000); });
  };
  const state = el.querySelector('[data-field="state"]');
  if (state && state.textContent === "running") setTimeout(tick, 300);
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll('input[name="authType"]').forEach(function (r) { r.addEventListener("change", showAuth); });
  if (document.querySelector(".auth-fields")) showAuth();
  document.querySelectorAll(".header-row").forEach(wireHeaderRow);
  const add = document.getElementById("add-header");
  if (add) add.addEventListener("click", addHeader);
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      const src = document.getElementById(b.dataset.copy);
      src.select();
      const done = function () { b.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(src.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });
  document.querySelectorAll("[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  const job = document.getElementById("job");
  if (job) pollJob(job);
});
