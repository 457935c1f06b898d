// ptm explore: a read-only view of a verified ledger copy. Plain JavaScript, no build step.
// Every value from the ledger is inserted as text (never as HTML): entries hold text that
// members wrote. Inclusion and consistency proofs are checked here, with WebCrypto SHA-256
// (RFC 9162 §2.1.3.2 and §2.1.4.2) against the root of a checkpoint whose hub signature
// (Ed25519) is also checked here, so the page does not take the server's word for them.
"use strict";

const main = document.getElementById("main");
const enc = new TextEncoder();

// --- DOM helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const link = (href, text, cls) => h("a", { href, class: cls }, text);
const short = (hex, n = 16) => (hex ? hex.slice(0, n) + "…" : "-");
const taskLink = (id) => link("#/task/" + id, short(id), "mono");
const entryLink = (i) => link("#/entry/" + i, "#" + i, "mono");
const status = (s) => h("span", { class: "status-" + s }, s);

function table(headers, rows, rowClass) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r, i) => h("tr", { class: rowClass ? rowClass(i) : null },
      r.map((c) => h("td", {}, c))))));
}

function fields(obj) {
  const dl = h("dl", { class: "fields" });
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined) continue;
    const text = typeof v === "object" ? JSON.stringify(v, null, 1) : String(v);
    dl.append(h("dt", {}, k), h("dd", { class: typeof v === "object" ? "mono" : null }, text));
  }
  return dl;
}

async function api(path) {
  const r = await fetch("/api/" + path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function pager(page, base) {
  const { total, offset, limit } = page;
  const sep = base.includes("?") ? "&" : "?";
  return h("div", { class: "pager" },
    offset > 0 ? link(`${base}${sep}offset=${Math.max(0, offset - limit)}`, "← newer/previous") : null,
    h("span", { class: "muted" }, `${total ? offset + 1 : 0}–${Math.min(total, offset + limit)} of ${total}`),
    offset + limit < total ? link(`${base}${sep}offset=${offset + limit}`, "next →") : null);
}

function answersCell(answers, pending) {
  return h("span", {}, answers.map((a) => h("span", {}, a.site.org || short(a.site.key, 8), " ",
    status(a.status), "  ")), (pending || []).map((p) => h("span", { class: "muted" }, p, " waiting  ")));
}

// --- crypto (WebCrypto) --------------------------------------------------------------------

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}
const bytesHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const b64Bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}
async function leafHash(raw) {
  const b = new Uint8Array(raw.length + 1);
  b[0] = 0; b.set(raw, 1);
  return sha256(b);
}
async function nodeHash(l, r) {
  const b = new Uint8Array(65);
  b[0] = 1; b.set(l, 1); b.set(r, 33);
  return sha256(b);
}
const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

// The RFC 9162 path from node fn (of last node sn) up to the root, shared by both proofs:
// for each of the proof's count hashes, whether it is a left sibling (hashed before the
// running value); or what is wrong when the proof is longer or shorter than the path.
function pathSides(fn, sn, count) {
  const sides = [];
  for (let i = 0; i < count; i++) {
    if (sn === 0) return "the proof is longer than the path to the root";
    const left = odd(fn) || fn === sn;
    sides.push(left);
    if (left && !odd(fn)) {
      // the tree's right edge: climb until fn is a right child or the root
      do { fn = half(fn); sn = half(sn); } while (!(odd(fn) || fn === 0));
    }
    fn = half(fn); sn = half(sn);
  }
  return sn === 0 ? sides : "the proof is shorter than the path to the root";
}

// RFC 9162 §2.1.3.2
async function verifyInclusion(leaf, index, size, proof, root) {
  if (index >= size) return "the entry's index is not below the tree size";
  const sides = pathSides(index, size - 1, proof.length);
  if (typeof sides === "string") return sides;
  let r = leaf;
  for (const [i, p] of proof.entries()) r = sides[i] ? await nodeHash(p, r) : await nodeHash(r, p);
  if (!same(r, root)) return `the proof leads to root ${bytesHex(r).slice(0, 16)}…, not the signed root ${bytesHex(root).slice(0, 16)}…`;
  return null;
}

// RFC 9162 §2.1.4.2
async function verifyConsistency(oldSize, newSize, proof, oldRoot, newRoot) {
  if (oldSize === newSize) return proof.length === 0 && same(oldRoot, newRoot) ? null : "two trees of one size with different roots";
  if (oldSize === 0) return null;
  const path = proof.slice();
  if ((oldSize & (oldSize - 1)) === 0) path.unshift(oldRoot);
  let fn = oldSize - 1, sn = newSize - 1;
  while (odd(fn)) { fn = half(fn); sn = half(sn); }
  const sides = pathSides(fn, sn, path.length - 1);
  if (typeof sides === "string") return sides;
  let fr = path[0], sr = path[0];
  for (const [i, c] of path.slice(1).entries()) {
    if (sides[i]) {
      fr = await nodeHash(c, fr); sr = await nodeHash(c, sr);
    } else {
      sr = await nodeHash(sr, c);
    }
  }
  if (!same(fr, oldRoot)) return "the proof does not lead to the older checkpoint's root";
  if (!same(sr, newRoot)) return "the proof does not lead to the newer checkpoint's root";
  return null;
}

// A signed note (C2SP signed-note / tlog-checkpoint): body, blank line, signature lines.
function parseNote(note) {
  const cut = note.lastIndexOf("\n\n");
  const body = note.slice(0, cut + 1);
  const [origin, size, root] = body.split("\n");
  const sigs = note.slice(cut + 2).split("\n").filter((l) => l).map((l) => {
    const rest = l.replace(/^\u2014 /, "");
    const sp = rest.lastIndexOf(" ");
    return { name: rest.slice(0, sp), raw: b64Bytes(rest.slice(sp + 1)) };
  });
  return { body, origin, size: Number(size), root: b64Bytes(root), sigs };
}

// The hub's Ed25519 signature on the note, key id SHA-256(name || 0a || 01 || key)[:4].
async function verifyHubSignature(note, origin, hubKeyHex) {
  const key = hexBytes(hubKeyHex);
  const idInput = new Uint8Array([...enc.encode(origin), 0x0a, 0x01, ...key]);
  const keyId = (await sha256(idInput)).slice(0, 4);
  const mine = note.sigs.filter((s) => s.name === origin && same(s.raw.slice(0, 4), keyId));
  if (!mine.length) return "no signature line by the hub's key";
  let pub;
  try {
    pub = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
  } catch (e) {
    return "this browser has no Ed25519 in WebCrypto (" + e.message + ")";
  }
  for (const s of mine) {
    if (await crypto.subtle.verify({ name: "Ed25519" }, pub, s.raw.slice(4), enc.encode(note.body))) return null;
  }
  return "the hub's signature on the checkpoint does not verify";
}

async function checkInclusion(index, size) {
  const p = await api(`proof/${index}` + (size ? `?size=${size}` : ""));
  const note = parseNote(p.note);
  if (note.origin !== p.origin) return { ok: false, text: `checkpoint origin ${note.origin} is not this log's ${p.origin}` };
  if (note.size !== p.size) return { ok: false, text: `checkpoint says size ${note.size}, not ${p.size}` };
  const sigError = await verifyHubSignature(note, p.origin, p.hub_key);
  if (sigError) return { ok: false, text: "checkpoint: " + sigError };
  const leaf = await leafHash(hexBytes(p.raw));
  const error = await verifyInclusion(leaf, p.index, p.size, p.proof.map(hexBytes), note.root);
  if (error) return { ok: false, text: `FAILED: entry ${p.index} is not in the hub-signed tree of size ${p.size}: ${error}` };
  return { ok: true, text: `verified: entry ${p.index} (leaf ${bytesHex(leaf).slice(0, 16)}…) is in the hub-signed tree of size ${p.size}, root ${bytesHex(note.root).slice(0, 16)}… — ${p.proof.length} proof hashes and the hub's Ed25519 signature checked in this browser` };
}

async function checkConsistency(oldSize, newSize) {
  const p = await api(`consistency?old=${oldSize}&new=${newSize}`);
  const a = parseNote(p.old_note), b = parseNote(p.new_note);
  for (const n of [a, b]) {
    const sigError = await verifyHubSignature(n, p.origin, p.hub_key);
    if (sigError) return { ok: false, text: `checkpoint ${n.size}: ${sigError}` };
  }
  const error = await verifyConsistency(p.old, p.new, p.proof.map(hexBytes), a.root, b.root);
  if (error) return { ok: false, text: `FAILED: checkpoint ${p.new} does not extend checkpoint ${p.old}: ${error}` };
  return { ok: true, text: `verified: the hub-signed tree of size ${p.new} extends the one of size ${p.old} (${p.proof.length} proof hashes checked in this browser)` };
}

// --- pages -----------------------------------------------------------------------------------

// A paged list (studies, tasks): its title, the pager and one page of rows.
const listPage = (name, tableOf) => async (params) => {
  const page = await api(`${name}?offset=${params.offset || 0}`);
  return [h("h1", {}, name), pager(page, "#/" + name), tableOf(page.items)];
};

const pages = {
  async overview() {
    const o = await api("overview");
    const c = o.counts;
    const verdict = o.ok
      ? h("span", { class: "verdict ok", id: "verdict" }, "verified: every entry, chain, rule and checkpoint")
      : h("span", { class: "verdict bad", id: "verdict" }, "FAILED: this copy cannot be trusted as it is");
    return [
      h("h1", {}, o.origin || "(no genesis)"),
      verdict,
      h("p", { class: "muted" }, `${o.ledger} · ${o.size} entries · ${o.first_time} … ${o.last_time} (UTC)`),
      h("div", { class: "cards" }, [
        ["studies", c.studies, "#/studies"], ["tasks", c.tasks, "#/tasks"], ["sites", c.sites, "#/sites"],
        ["members", c.members, "#/members"], ["checkpoints", c.checkpoints, "#/checkpoints"],
        ["refused entries", c.refused_entries, "#/entries?bad=1"],
      ].map(([k, v, href]) => h("a", { class: "card", href }, h("b", {}, v), k))),
      o.causes.length ? h("h2", { class: "bad-text" }, `problems (${o.causes.length} causes)`) : null,
      o.causes.length ? h("ul", { id: "causes" }, o.causes.map((p) => h("li", { class: "bad" },
        p.index !== null ? entryLink(p.index) : null, " ", p.message,
        p.consequence_count ? h("div", { class: "muted" }, `${p.consequence_count} consequences: ` + p.consequences.join(" · ")) : null))) : null,
      o.evidence.length ? h("h2", { class: "bad-text" }, "evidence of misbehaviour") : null,
      h("ul", {}, o.evidence.map((e) => h("li", { class: "bad" }, e))),
      o.warnings.length ? h("h2", {}, "warnings") : null,
      h("ul", {}, o.warnings.map((w) => h("li", {}, w))),
      h("h2", {}, "latest checkpoint"),
      o.latest_checkpoint ? checkpointTable([o.latest_checkpoint]) : h("p", {}, "none"),
      h("h2", {}, "recent studies"),
      studyTable(o.recent_studies),
      h("p", { class: "muted" }, "study rule: " + o.study_rule),
    ];
  },

  studies: listPage("studies", studyTable),

  async study(params, id) {
    const s = await api("study/" + id);
    return [
      h("h1", {}, `study ${short(s.study)} — ${s.family}`),
      fields({ study: s.study, for: s.publisher, organisation: s.publisher_org, rounds: s.rounds,
        algorithms: s.algorithms.join(", "), images: s.images.join(", "), data: s.data.join(", "),
        sites: s.sites.join(", "), first: s.first_time, last: s.last_time, answers: s.statuses }),
      s.not_ok.length ? h("h2", {}, "answers that are not ok") : null,
      s.not_ok.length ? table(["round", "task", "site", "status", "reason"], s.not_ok.map((n) =>
        [n.round, taskLink(n.task), n.site, status(n.status), n.reason || "no reason given"])) : null,
      h("h2", {}, "rounds"),
      taskTable(s.tasks.items),
    ];
  },

  tasks: listPage("tasks", taskTable),

  async task(params, id) {
    const t = await api("task/" + id);
    return [
      h("h1", {}, `task ${short(t.task)} — ${t.algorithm_name}`),
      fields({ task: t.task, entry: "#" + t.index, published: t.time, timestamp_ms: t.timestamp_ms,
        by: t.publisher, organisation: t.publisher_org, study: t.study, round: t.round,
        algorithm: t.algorithm, image: t.image, data: t.data.join(", ") || "(none named)",
        limits: t.limits, format: t.format, description: t.description,
        cancelled: t.cancelled ? `at entry ${t.cancelled.index}, ${t.cancelled.time}: ${t.cancelled.reason || "-"}` : null }),
      h("p", {}, link("#/entry/" + t.index, "the signed entry and its proof"), " · ",
        t.study ? link("#/study/" + t.study, "its study") : null),
      h("h2", {}, "what each site answered"),
      table(["site", "status", "public reason", "time", "entry", "ran the task's image"],
        t.answers.map((a) => [link("#/site/" + a.site.key, a.site.name), status(a.status),
          a.reason || (a.status === "ok" ? "" : "no reason given"), a.time, entryLink(a.index),
          a.ran_image_of_task ? "yes" : a.image_digest]), (i) => (t.answers[i].status === "ok" ? null : "not-ok")),
      t.pending.length ? h("p", { class: "muted" }, "no answer yet from: " + t.pending.join(", ")) : null,
    ];
  },

  async members() {
    const ms = await api("members");
    return [h("h1", {}, "members"), table(["organisation", "role", "key", "entries", "timeline"],
      ms.map((m) => [m.org, m.role, link("#/search/" + m.key, short(m.key), "mono"), m.entries,
        h("span", {}, m.timeline.map((e) => h("div", { class: e.event === "revoked" ? "bad-text" : null },
          e.event, e.index !== null ? [" at ", entryLink(e.index), " ", e.time || ""] : "",
          e.reason ? ` (${e.reason})` : "")))]))];
  },

  async sites() {
    const ss = await api("sites");
    return [h("h1", {}, "sites"), table(["site", "targeted by", "answered", "answers", "ran", "data"],
      ss.map((s) => [link("#/site/" + s.key, s.name), s.targeted, s.answered,
        Object.entries(s.statuses).map(([k, v]) => h("span", {}, status(k), ` ${v}  `)),
        s.ran.join(", "), s.data.join(", ")]))];
  },

  async site(params, key) {
    const s = await api(`site/${key}?offset=${params.offset || 0}`);
    return [
      h("h1", {}, "site " + s.name),
      fields({ key: s.key, organisation: s.org, "targeted by": s.targeted + " tasks", answered: s.answered,
        answers: s.statuses, ran: s.ran.join(", ") || "-", data: s.data.join(", ") || "-" }),
      h("h2", {}, `refused, failed and other answers that are not ok (${s.not_ok.length})`),
      table(["task", "algorithm", "for", "status", "public reason", "time"], s.not_ok.map((n) =>
        [taskLink(n.task), n.algorithm, n.publisher, status(n.status), n.reason || "no reason given", n.time])),
      h("h2", {}, "tasks sent to it, newest first"),
      pager(s.tasks, "#/site/" + key),
      taskTable(s.tasks.items),
    ];
  },

  async checkpoints() {
    const cps = await api("checkpoints");
    const opts = () => cps.map((c) => h("option", { value: c.size }, String(c.size)));
    const oldSel = h("select", { id: "cons-old" }, opts());
    const newSel = h("select", { id: "cons-new" }, opts());
    if (cps.length) newSel.value = String(cps[cps.length - 1].size);
    const out = h("div", { id: "consistency-result" });
    const run = async () => {
      out.className = "proof-result";
      out.textContent = "checking…";
      try {
        const r = await checkConsistency(Number(oldSel.value), Number(newSel.value));
        out.className = "proof-result " + (r.ok ? "ok" : "bad");
        out.textContent = r.text;
      } catch (e) { out.className = "proof-result bad"; out.textContent = "FAILED: " + e.message; }
    };
    return [
      h("h1", {}, "checkpoints"),
      h("p", { class: "muted" }, "Each checkpoint once, with every witness (site) that cosigned it and when."),
      checkpointTable(cps),
      h("h2", {}, "consistency between two checkpoints (checked in this browser)"),
      h("p", {}, "older ", oldSel, " newer ", newSel, " ", h("button", { id: "verify-consistency", onclick: run }, "verify")),
      out,
    ];
  },

  async entries(params) {
    const bad = params.bad === "1";
    const page = await api(`entries?offset=${params.offset || 0}` + (bad ? "&bad=1" : ""));
    return [
      h("h1", {}, bad ? "entries the replay refused" : "every entry"),
      h("p", {}, bad ? link("#/entries", "show every entry") : link("#/entries?bad=1", "show only refused or forged entries")),
      pager(page, bad ? "#/entries?bad=1" : "#/entries"),
      entryTable(page.items),
    ];
  },

  async entry(params, ref) {
    const e = await api("entry/" + ref);
    const bad = e.status !== "accepted";
    const sizes = e.covering_checkpoints || [];
    const sel = h("select", { id: "proof-size" }, sizes.map((s) => h("option", { value: s }, String(s))));
    if (sizes.length) sel.value = String(sizes[sizes.length - 1]);
    const out = h("div", { id: "proof-result" });
    const run = async () => {
      out.className = "proof-result";
      out.textContent = "checking…";
      try {
        const r = await checkInclusion(e.index, Number(sel.value));
        out.className = "proof-result " + (r.ok ? "ok" : "bad");
        out.textContent = r.text;
      } catch (err) { out.className = "proof-result bad"; out.textContent = "FAILED: " + err.message; }
    };
    return [
      h("h1", { class: bad ? "bad-text" : null, id: "entry-title" }, `entry #${e.index} — ${e.kind || "undecodable"}`),
      bad ? h("p", { class: "verdict bad", id: "entry-verdict" }, `${e.status.toUpperCase()}: ${e.problem}`)
        : h("p", { class: "verdict ok", id: "entry-verdict" }, "accepted by the replay"),
      fields({ index: e.index, hash: e.hash, kind: e.kind, author: e.author ? `${e.author_name} ${e.author}` : null,
        seq: e.seq, signed_time: e.time, timestamp_ms: e.timestamp_ms, prev: e.prev,
        leaf_hash: e.leaf_hash, stored_leaf_hash: e.stored_leaf_hash !== e.leaf_hash ? e.stored_leaf_hash + " (differs: the bytes changed after they were appended)" : null,
        decode_error: e.decode_error, missing: e.missing }),
      e.fields ? [h("h2", {}, "public fields"), fields(e.fields)] : null,
      e.kind === "task" ? h("p", {}, link("#/task/" + e.hash, "the task's page")) : null,
      h("h2", {}, "inclusion proof, checked in this browser"),
      sizes.length
        ? h("p", {}, "against the hub-signed checkpoint of size ", sel, " ", h("button", { id: "verify-proof", onclick: run }, "verify"))
        : h("p", { class: "muted" }, "no checkpoint covers this entry yet"),
      out,
      h("h2", {}, "raw bytes"),
      h("p", { class: "mono" }, e.raw || "-"),
    ];
  },

  async search(params, q) {
    const r = await api("search?q=" + encodeURIComponent(q));
    document.getElementById("q").value = q;
    if (!r.groups.length) return [h("h1", {}, `search: ${q}`), h("p", { id: "no-results" }, "nothing found")];
    return [h("h1", {}, `search: ${q}`), r.groups.map((g) => h("div", { class: "group" },
      h("h2", {}, `${g.title} (${g.total})`),
      g.kind === "tasks" ? table(["entry", "time", "task", "algorithm", "image", "by", "data", "answers"],
        g.items.map((t) => [entryLink(t.index), t.time, taskLink(t.task), t.algorithm, t.image_repository, t.publisher,
          t.data.join(", "), Object.entries(t.statuses).map(([s, v]) => h("span", {}, s, " ", status(v), "  "))]))
        : g.kind === "entries" ? entryTable(g.items)
        : g.kind === "members" ? table(["organisation", "role", "key", "admitted", "revoked"], g.items.map((m) =>
          [m.role === "site" ? link("#/site/" + m.key, m.org) : m.org, m.role, h("span", { class: "mono" }, m.key), m.admitted_time, m.revoked_time || "-"]))
        : studyTable(g.items)))];
  },
};

function studyTable(rows) {
  return table(["study", "family", "for", "rounds", "first", "last", "answers"], rows.map((s) =>
    [link("#/study/" + s.study, short(s.study), "mono"), s.family, s.publisher, s.rounds, s.first_time, s.last_time,
      Object.entries(s.statuses).map(([k, v]) => h("span", {}, status(k), ` ${v}  `))]));
}

function taskTable(rows) {
  return table(["entry", "time", "task", "algorithm", "image", "by", "data", "answers"], rows.map((t) =>
    [entryLink(t.index), t.time, taskLink(t.task), t.algorithm_name, t.image_repository, t.publisher,
      t.data.join(", "), answersCell(t.answers, t.pending)]));
}

function entryTable(rows) {
  return table(["entry", "kind", "author", "seq", "signed time", "hash", "verdict"], rows.map((e) =>
    [entryLink(e.index), e.kind || "?", e.author_name || "-", e.seq ?? "-", e.time || "-",
      h("span", { class: "mono" }, short(e.hash)), e.status === "accepted" ? "ok" : `${e.status}: ${e.problem}`]),
  (i) => (rows[i].status === "accepted" ? null : "bad"));
}

function checkpointTable(cps) {
  return table(["size", "root", "verdict", "witness cosignatures"], cps.map((c) =>
    [c.size, h("span", { class: "mono" }, short(c.root, 24)),
      c.ok ? h("span", { class: "ok-text" }, "ok") : h("span", { class: "bad-text" },
        !c.signed_by_hub ? "not signed by the hub" : !c.matches_entries ? "root does not match the entries" : "not consistent with the previous"),
      c.cosignatures.map((w) => h("div", {}, `${w.name} at ${w.time}`))]),
  (i) => (cps[i].ok ? null : "bad"));
}

// --- routing -----------------------------------------------------------------------------------

async function render() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const [, name, arg] = path.split("/").map(decodeURIComponent);
  const page = pages[name || "overview"];
  main.setAttribute("aria-busy", "true");
  try {
    const content = page ? await page(params, arg) : [h("p", {}, "no such page")];
    main.replaceChildren(...[content].flat(Infinity).filter((x) => x));
  } catch (e) {
    main.replaceChildren(h("h1", {}, "not found"), h("p", { class: "bad-text" }, e.message));
  }
  main.setAttribute("aria-busy", "false");
  main.dataset.page = name || "overview";
}

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) location.hash = "#/search/" + encodeURIComponent(q);
});
window.addEventListener("hashchange", render);
render();
