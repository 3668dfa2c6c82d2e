// The sandbox's event inspector: polls /sandbox/inspect and renders it.
// Every value goes in through textContent or an attribute, never as HTML: event ids
// and test codes come from whoever sent the events.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function keysCell(present, names) {
  const cell = el("td");
  for (const name of names) {
    const has = present.includes(name);
    const chip = el("span", name, has ? "key" : "key absent");
    chip.title = has ? name + ": present" : name + ": absent";
    chip.dataset.present = has ? "yes" : "no";
    cell.appendChild(chip);
  }
  return cell;
}

function row(event, names) {
  const tr = el("tr", null, event.duplicate ? "duplicate" : "");
  tr.dataset.eventId = event.event_id ?? "";
  tr.dataset.duplicate = event.duplicate ? "yes" : "no";
  tr.appendChild(el("td", clock(event.received_at)));
  tr.appendChild(el("td", event.pixel, "id pixel"));
  tr.appendChild(el("td", event.event));
  tr.appendChild(el("td", event.event_id, "id"));
  tr.appendChild(el("td", event.source));
  tr.appendChild(keysCell(event.match_keys, names));
  tr.appendChild(el("td", event.limited_data_use === null ? "not sent" : String(event.limited_data_use)));
  tr.appendChild(el("td", event.test_event_code ?? "none", "id"));
  const dup = el("td", event.duplicate ? "duplicate" : "", event.duplicate ? "flag duplicate-flag" : "");
  if (event.duplicate) dup.title = "TikTok drops this one: same pixel, event and event_id within 48 hours";
  tr.appendChild(dup);
  return tr;
}

function chart(minutes) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const width = 600, height = 110, slot = width / Math.max(minutes.length, 1);
  const peak = Math.max(1, ...minutes.map((m) => m.accepted + m.refused));
  minutes.forEach((minute, index) => {
    let top = height;
    for (const outcome of ["accepted", "refused"]) {
      const count = minute[outcome];
      if (!count) continue;
      const tall = (count / peak) * (height - 10);
      top -= tall;
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(index * slot + 1));
      bar.setAttribute("y", String(top));
      bar.setAttribute("width", String(Math.max(slot - 2, 1)));
      bar.setAttribute("height", String(tall));
      bar.setAttribute("class", outcome);
      const title = document.createElementNS(SVG, "title");
      title.textContent = clock(minute.minute) + ": " + count + " " + outcome;
      bar.appendChild(title);
      svg.appendChild(bar);
    }
  });
}

function render(data) {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...data.rows.map((event) => row(event, data.match_key_names)));
  const duplicates = data.rows.filter((event) => event.duplicate).length;
  document.getElementById("summary").textContent =
    data.total_events + " events accepted in " + data.total_requests + " requests; " +
    duplicates + " duplicate(s) among the rows shown";
  document.getElementById("shown").textContent =
    data.rows.length < data.total_events ? "(latest " + data.rows.length + ")" : "";
  document.getElementById("empty").hidden = data.rows.length > 0;
  chart(data.per_minute);
  const peak = Math.max(0, ...data.per_minute.map((m) => m.accepted + m.refused));
  document.getElementById("chart-caption").textContent =
    "Last " + data.per_minute.length + " minutes, oldest on the left; busiest minute: " + peak + " events.";
  window.inspected = data; // for tests and the curious: what the page rendered
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("/sandbox/inspect", { cache: "no-store" });
    if (!response.ok) throw new Error("the sandbox answered " + response.status);
    render(await response.json());
    error.hidden = true;
  } catch (failure) {
    error.textContent = "Could not reach the sandbox: " + failure.message + " (is it still running?)";
    error.hidden = false;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", poll);
