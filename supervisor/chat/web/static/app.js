// The web chat page: one WebSocket, a sidebar of sessions, one open thread.
//
// Exactly once from this side: every action gets a client id and waits in an outbox
// (kept in localStorage, so a reload keeps it) until the server acknowledges that id;
// after any reconnect the outbox is sent again with the same ids, and the server
// recognises resends. Updates are applied by version, so a duplicate or a late update
// never undoes a newer one. Text from the agent or the person only reaches the page
// through SupervisorRender.markdown (sanitised) or textContent.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // The tabs of one browser share localStorage and write it while the others run: one
  // stored list would be overwritten by whichever tab saved last, losing what another
  // queued. So each entry has a key of its own, which only the page that queued it (its
  // owner) writes. A page holds a Web Lock named after itself while it lives: an entry
  // whose owner's lock is free was left by a page since closed (or reloaded), and one
  // page adopts it, under that lock, to send it (the server would recognise a resend,
  // but not a message whose files live in another tab's memory). Without Web Locks (a
  // page over plain http from another host is no secure context) a page adopts every
  // entry it finds at load, as the one list did.
  const PAGE = clientId();
  const OUTBOX = "supervisor-outbox-" + location.port + "/"; // + client id: {owner, message}
  const REFUSED = "supervisor-refused-" + location.port + "/"; // + client id: {at, message, reason}
  const REFUSED_KEPT = 20;
  const TYPING_MS = 4500;
  const UPLOAD_RETRY_MS = 2000;
  // A Stop is for the turn that ran when it was pressed: one still unsent after this long
  // (the connection was down, its tab was closed and opened the next day) would cut
  // whatever turn runs then, so it is dropped, and the page says so.
  const STOP_KEPT_MS = 60000;
  // The core opens a new session's thread as soon as it takes its `!new`: a thread of that
  // name appearing later than this after the form's ack is not the form's.
  const SESSION_WAIT_MS = 60000;
  const TIMING = window.supervisorTiming || {}; // shorter bounds, set by a test before load
  // The server says something at least every 20 s (asgi.KEEPALIVE_S). A connection whose
  // path died without a close (Wi-Fi gone, a VPN re-keyed) looks open to the browser for
  // minutes: one that carried nothing for this long is given up for a new one.
  const SILENCE_MS = TIMING.silenceMs || 45000;
  // An upload gets a minute, plus its file's time at 50 kB/s (a slow phone link): past
  // that its connection is taken for dead, and the upload fails (and is tried again).
  const UPLOAD_BASE_MS = TIMING.uploadBaseMs || 60000;
  const UPLOAD_BYTES_PER_MS = 50;

  const state = {
    ws: null,
    connected: false,
    version: 0,
    threads: new Map(), // id -> thread row
    messages: new Map(), // thread id -> Map(message id -> row), loaded threads only
    unread: new Set(),
    selected: localStorage.getItem("supervisor-selected") || "main",
    typingUntil: new Map(),
    more: new Map(), // thread id -> true while older messages exist on the server
    // A long thread opens on its newest page; older pages are fetched on demand.
    outbox: [], // [{id, type, ...}] not yet acknowledged, of this page's (see OUTBOX)
    queued: 0, // when this page last queued an action: the outbox's order
    uploads: new Map(), // outbox id -> [File] still to upload (memory only)
    attached: new Map(), // outbox id -> [File] it carries, kept until its ack for "Edit again"
    // outbox id -> {message, reason, files}: the server will not take it. Kept (but for
    // its files) in localStorage, so a reload does not lose the words before "Edit again".
    refused: new Map(), // filled by loadRefused() at start
    choiceNotes: new Map(), // card id -> why the server refused its last press
    limits: { max_text: 200000, max_files: 20 }, // the server's, from its welcome
    files: [], // attachments chosen in the composer
    awaitingSession: null, // {name, id, until}: asked in the form, selected when its thread appears
    retry: 250,
    reconnectTimer: null, // the next connect() after a close, while one waits
    heardAt: 0, // when the socket last carried something (or was made)
    uploadRetry: UPLOAD_RETRY_MS, // the wait before an upload the server refused is tried again
    uploadProblem: false, // the problem line says an upload waits
    uploadTimer: null, // the upload tried again, once at a time
    tokenRefused: false, // the problem line says the server refuses this page's token
    page: null, // the server's page settings, from its welcome
  };

  function readStored(key) {
    try { return JSON.parse(localStorage.getItem(key)); } catch (e) { return null; }
  }
  function storedUnder(prefix) {
    const keys = [];
    for (let i = 0; i < localStorage.length; i++) if (localStorage.key(i).startsWith(prefix)) keys.push(localStorage.key(i));
    return keys.map(readStored).filter((entry) => entry && entry.message);
  }
  function storeQueued(message) {
    localStorage.setItem(OUTBOX + message.id, JSON.stringify({ owner: PAGE, message }));
  }
  function unqueue(id) {
    state.outbox = state.outbox.filter((m) => m.id !== id);
    localStorage.removeItem(OUTBOX + id);
  }
  const pageLock = (page) => "supervisor-page-" + location.port + "-" + page;
  if (navigator.locks) navigator.locks.request(pageLock(PAGE), () => new Promise(() => {})); // held for life

  // Another page's entries are this page's to send once that page is gone (see OUTBOX):
  // it waits for each owner's lock, and the one page granted it first adopts them.
  const watched = new Set(); // owners whose lock this page waits for
  function watchLeftEntries() {
    for (const { owner } of storedUnder(OUTBOX)) {
      if (owner === PAGE || watched.has(owner)) continue;
      watched.add(owner);
      if (navigator.locks) navigator.locks.request(pageLock(owner), () => adoptEntriesOf(owner));
      else adoptEntriesOf(owner);
    }
  }
  function adoptEntriesOf(owner) {
    const left = storedUnder(OUTBOX).filter((entry) => entry.owner === owner); // read again: adopted meanwhile?
    for (const { message } of left) {
      if (state.outbox.some((m) => m.id === message.id)) continue;
      state.outbox.push(message);
      storeQueued(message);
    }
    state.outbox.sort((a, b) => (a.queued || 0) - (b.queued || 0));
    renderPending();
    if (left.length && state.connected) flushOutbox();
  }

  // Refused messages, the newest few of every tab's: one waits to be edited again, not for ever.
  function loadRefused() {
    trimRefused();
    const saved = storedUnder(REFUSED).sort((a, b) => a.at - b.at);
    return new Map(saved.map(({ message, reason }) => [message.id, { message, reason, files: null }]));
  }
  function keepRefused(id, entry) {
    state.refused.set(id, entry);
    localStorage.setItem(REFUSED + id, JSON.stringify({ at: Date.now(), message: entry.message, reason: entry.reason }));
    trimRefused();
  }
  function forgetRefused(id) {
    state.refused.delete(id);
    localStorage.removeItem(REFUSED + id);
  }
  function trimRefused() {
    const newestFirst = storedUnder(REFUSED).sort((a, b) => b.at - a.at);
    for (const { message } of newestFirst.slice(REFUSED_KEPT)) forgetRefused(message.id);
  }
  window.addEventListener("storage", (event) => {
    // Without Web Locks another page's entries are adopted at load only (it may be open).
    if (navigator.locks && event.key && event.key.startsWith(OUTBOX) && event.newValue) watchLeftEntries();
    // Another tab's refusal shows here too, and its "Edit again" takes it away here.
    if (!event.key || !event.key.startsWith(REFUSED)) return;
    const id = event.key.slice(REFUSED.length);
    const entry = event.newValue && readStored(event.key);
    if (entry) state.refused.set(id, { message: entry.message, reason: entry.reason, files: null });
    else state.refused.delete(id);
    renderPending();
  });

  // Pages before the keys of their own kept one list of each: taken apart once (two tabs
  // doing it at once write the same entries).
  function splitOldLists() {
    const outbox = readStored("supervisor-outbox-" + location.port);
    const refused = readStored("supervisor-refused-" + location.port);
    if (Array.isArray(outbox)) {
      outbox.forEach((message, i) => localStorage.setItem(OUTBOX + message.id, JSON.stringify({ owner: "", message: { ...message, queued: i } })));
    }
    if (Array.isArray(refused)) {
      refused.forEach(([id, { message, reason }], i) => localStorage.setItem(REFUSED + id, JSON.stringify({ at: i, message, reason })));
    }
    localStorage.removeItem("supervisor-outbox-" + location.port);
    localStorage.removeItem("supervisor-refused-" + location.port);
  }

  function clientId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // connection ------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    state.ws = ws;
    state.heardAt = Date.now();
    let opened = false;
    ws.onopen = () => {
      opened = true;
      state.heardAt = Date.now();
      state.retry = 250;
      if (state.tokenRefused) showProblem("");
      state.tokenRefused = false;
      // Only the messages of threads it holds are of use to it: a tab asleep through a
      // busy day is not sent the rest (it marks those threads unread).
      ws.send(JSON.stringify({ type: "hello", since: state.version, held: Array.from(state.messages.keys()) }));
    };
    ws.onmessage = (event) => {
      state.heardAt = Date.now();
      receive(JSON.parse(event.data));
    };
    ws.onclose = () => {
      state.connected = false;
      showConnection();
      if (!opened) checkAccess();
      state.reconnectTimer = setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 2000);
    };
  }

  // The connection is given up on (silent too long, or the network changed): its socket
  // may take a minute to close, so the page leaves it and connects again at once.
  function reconnectNow() {
    const ws = state.ws;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.close();
    state.connected = false;
    showConnection();
    connect();
  }
  setInterval(() => {
    if (state.ws.readyState !== WebSocket.CLOSED && Date.now() - state.heardAt > SILENCE_MS) reconnectNow();
  }, 1000);
  window.addEventListener("online", reconnectNow);

  // A supervisor that answers but refuses this page (its access token was made anew,
  // say with a fresh state directory) would otherwise look like one still restarting.
  async function checkAccess() {
    let response;
    try {
      response = await fetch("/", { method: "HEAD", credentials: "same-origin", cache: "no-store" });
    } catch (e) {
      return; // down: reconnecting is the truth
    }
    if (response.status !== 401 || state.connected) return;
    state.tokenRefused = true;
    showProblem("The supervisor no longer accepts this page's access token: open the address it printed (the one with ?token=) again.");
  }

  function send(message) {
    if (state.connected && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function showConnection() {
    const el = $("connection");
    el.textContent = state.connected ? "connected" : "reconnecting…";
    el.classList.toggle("down", !state.connected);
  }

  function receive(update) {
    switch (update.type) {
      case "welcome":
        welcome(update);
        break;
      case "snapshot":
        snapshot(update);
        break;
      case "thread":
        if (update.thread.state === "idle") state.typingUntil.delete(update.thread.id);
        applyThread(update.thread);
        renderSidebar();
        renderHeader();
        break;
      case "message":
        applyMessage(update.message);
        break;
      case "typing":
        state.typingUntil.set(update.thread, Date.now() + TYPING_MS);
        renderTyping();
        break;
      case "ack":
        unqueue(update.id);
        state.attached.delete(update.id);
        if (state.awaitingSession && state.awaitingSession.id === update.id) state.awaitingSession.until = Date.now() + SESSION_WAIT_MS;
        break;
      case "error":
        refused(update.id, update.text);
        break;
    }
  }

  // The server refused one of our actions (too long, a thread that is gone...): it will
  // never take it, so it leaves the outbox (no resend on every reconnect) and shows why.
  function refused(id, reason) {
    if (state.awaitingSession && state.awaitingSession.id === id) state.awaitingSession = null;
    const message = state.outbox.find((m) => m.id === id);
    if (!message) return;
    state.uploads.delete(id);
    const files = state.attached.get(id) || null; // null: the page was reloaded since
    state.attached.delete(id);
    const card = message.type === "choose" ? loadedMessage(message.message) : null;
    if (message.type === "post" && state.threads.has(message.thread || "main")) {
      keepRefused(id, { message, reason, files }); // shown in its thread
      unqueue(id); // once kept as refused: a page closed in between loses neither
      renderPending();
    } else if (card) {
      // Drawn again as the page knows it: buttons to press again, with the reason beside
      // them; or, if it was answered meanwhile, its answer.
      state.choiceNotes.set(card.id, reason);
      unqueue(id);
      if (card.thread_id === state.selected) renderMessage(card);
    } else {
      unqueue(id);
      showProblem((message.type === "post" ? "Not sent: " : "Not done: ") + reason);
    }
  }

  function loadedMessage(id) {
    for (const loaded of state.messages.values()) if (loaded.has(id)) return loaded.get(id);
    return null;
  }

  function showProblem(text) {
    const problem = $("problem");
    problem.hidden = !text;
    problem.textContent = text;
  }

  function welcome(update) {
    if (update.version < state.version) {
      // Versions only grow: this is another history (its database was removed or
      // restored). What the page holds belongs to none of it; the outbox is kept.
      location.reload();
      return;
    }
    const page = update.page;
    if (page.max_text) state.limits = { max_text: page.max_text, max_files: page.max_files, max_file_bytes: page.max_file_bytes || 0 };
    const notice = $("notice");
    notice.hidden = !page.notice;
    notice.textContent = page.notice;
    state.page = page;
    fillSelect($("new-agent"), page.agents, "");
    fillSelect($("new-persona"), page.personas, "(none)");
    labelDefaultAgent();
    if (!$("new-cwd").value) $("new-cwd").placeholder = page.default_cwd || "default directory";
    for (const thread of update.threads) applyThread(thread);
    for (const message of update.messages) applyMessage(message);
    // Changed threads whose messages the welcome left out: ones this page holds none of,
    // and ones too changed to catch up message by message (fetched anew when shown).
    for (const id of update.reload || []) {
      state.messages.delete(id);
      state.more.delete(id);
    }
    for (const id of [...(update.changed || []), ...(update.reload || [])]) {
      if (id !== state.selected) state.unread.add(id);
    }
    // A refused message of a thread this history does not hold (reset since) can never
    // be shown, nor edited again.
    for (const [id, { message }] of state.refused) {
      if (!state.threads.has(message.thread || "main")) forgetRefused(id);
    }
    // Turns running now: busy at once, not at their next typing signal.
    for (const id of update.typing || []) state.typingUntil.set(id, Date.now() + TYPING_MS);
    state.version = Math.max(state.version, update.version);
    state.connected = true;
    showConnection();
    renderSidebar();
    if (!state.threads.has(state.selected)) state.selected = "main";
    select(state.selected); // says "open" again: the supervisor may have restarted
    followHash();
    flushOutbox();
  }

  // The form's blank agent is the one the session gets: the chosen persona's own agent,
  // else the default one.
  function labelDefaultAgent() {
    const page = state.page || {};
    const agent = (page.persona_agents || {})[$("new-persona").value] || page.default_agent;
    $("new-agent").options[0].textContent = agent ? agent + " (default)" : "(default agent)";
  }

  function fillSelect(select, values, blank) {
    const current = select.value;
    select.replaceChildren();
    select.append(new Option(blank, ""));
    for (const v of values) select.append(new Option(v, v));
    if (current) select.value = current;
  }

  async function flushOutbox() {
    // One flush at a time, so a file is never uploaded twice; a flush asked meanwhile runs after.
    if (state.flushing) { state.flushAgain = true; return; }
    state.flushing = true;
    try {
      do {
        state.flushAgain = false;
        await flushOnce();
      } while (state.flushAgain && state.connected);
    } finally {
      state.flushing = false;
    }
  }

  async function flushOnce() {
    for (const message of state.outbox.slice()) {
      if (message.type === "stop" && Date.now() - (message.queued || 0) > STOP_KEPT_MS) {
        unqueue(message.id);
        showProblem("A Stop pressed while the connection was down was not sent: press it again if the turn still runs.");
        continue;
      }
      const files = state.uploads.get(message.id);
      const big = files && overLimit(files);
      if (big) {
        // Over the limit of this connection's welcome (lower than when it was queued, or
        // unknown then): refused here, not by the server's 413, which comes before the
        // body is read, on a connection then closed with the rest unread: a browser that
        // sees only the reset would take it for a failure and try again for ever.
        refused(message.id, overTheLimit(big));
        continue;
      }
      if (files && files.length) {
        try {
          message.files = await uploadAll(files);
        } catch (e) {
          if (e instanceof TooLarge) {
            refused(message.id, e.message);
            continue;
          }
          // A file changed or deleted since it was chosen: the browser refuses its upload
          // at every try, and the messages behind it would wait for ever.
          const lost = await unreadable(files);
          if (lost.length) {
            const kept = (state.attached.get(message.id) || []).filter((f) => !lost.includes(f));
            if (state.attached.has(message.id)) state.attached.set(message.id, kept); // "Edit again" brings these back
            const names = lost.map((f) => f.name).join(", ");
            refused(message.id, `${names} can no longer be read (changed or deleted since chosen): attach ${lost.length === 1 ? "it" : "them"} again`);
            if (state.uploadProblem) showProblem("");
            state.uploadProblem = false;
            continue;
          }
          // Down: the next reconnect tries again. Refused while connected (the server
          // busy or failing): try again in a while, and say why the message waits.
          if (state.connected) {
            showProblem(`Attachments not uploaded yet (${e.message}); trying again.`);
            state.uploadProblem = true;
            if (!state.uploadTimer) {
              state.uploadTimer = setTimeout(() => { state.uploadTimer = null; flushOutbox(); }, state.uploadRetry);
              state.uploadRetry = Math.min(state.uploadRetry * 2, 30000);
            }
          }
          return;
        }
        if (state.uploadProblem) showProblem("");
        state.uploadProblem = false;
        state.uploadRetry = UPLOAD_RETRY_MS;
        state.uploads.delete(message.id);
        delete message.attaching;
        storeQueued(message);
      } else if (message.attaching) {
        // Its files were chosen in a page closed (or reloaded) before they could be
        // uploaded: the words alone must not go as if that were the whole message.
        refused(message.id, "the page was closed before its files were uploaded");
        continue;
      }
      send(message);
    }
  }

  // A file the server will never take (its limit is lower than when the message was
  // queued): the message is refused, not sent without it nor tried again.
  class TooLarge extends Error {}

  function megabytes(bytes) {
    return (bytes / 1e6).toLocaleString("en", { maximumFractionDigits: 1 });
  }

  // The first of `files` larger than the limit the server's welcome gave, if any.
  function overLimit(files) {
    return state.limits.max_file_bytes ? files.find((f) => f.size > state.limits.max_file_bytes) : undefined;
  }

  function overTheLimit(file) {
    return `${file.name} is ${megabytes(file.size)} MB; the limit is ${megabytes(state.limits.max_file_bytes)} MB per file (files.max_upload_mb)`;
  }

  // Those of `files` the browser can no longer read: their first chunk's read fails.
  // (Not a slice's: Chromium reads one of a deleted file as empty, its size then 0.)
  async function unreadable(files) {
    const lost = [];
    for (const file of files) {
      try {
        const reader = file.stream().getReader();
        await reader.read();
        reader.cancel().catch(() => {});
      } catch (e) {
        lost.push(file);
      }
    }
    return lost;
  }

  async function uploadAll(files) {
    const ids = [];
    for (const file of files) {
      const ms = UPLOAD_BASE_MS + file.size / UPLOAD_BYTES_PER_MS;
      let response;
      try {
        response = await fetch("/api/files?name=" + encodeURIComponent(file.name), {
          method: "POST", body: file, credentials: "same-origin",
          signal: AbortSignal.timeout ? AbortSignal.timeout(ms) : undefined, // Safari before 16 has none
        });
      } catch (e) {
        throw e.name === "TimeoutError" ? new Error(`${file.name}: no answer in ${Math.round(ms / 1000)} s`) : e;
      }
      if (response.status === 413) {
        // Said as the composer says it (the welcome before this upload gave the limit
        // now); a 413 of something in between (a proxy) says its own limit, as a page.
        const over = state.limits.max_file_bytes && file.size > state.limits.max_file_bytes;
        throw new TooLarge(over ? overTheLimit(file) : `${file.name} is larger than the server takes (413)`);
      }
      if (!response.ok) throw new Error(`${file.name}: ${(await response.text()) || response.status}`);
      ids.push((await response.json()).id);
    }
    return ids;
  }

  function enqueue(message) {
    message.id = clientId();
    message.queued = state.queued = Math.max(Date.now(), state.queued + 1);
    state.outbox.push(message);
    storeQueued(message);
    return message;
  }

  // model -----------------------------------------------------------------------------

  function applyThread(thread) {
    const known = state.threads.get(thread.id);
    if (known && known.version > thread.version) return;
    state.threads.set(thread.id, thread);
    state.version = Math.max(state.version, thread.version);
    const awaiting = state.awaitingSession;
    if (awaiting && awaiting.until && Date.now() > awaiting.until) state.awaitingSession = null;
    // A thread new to the page only: when the form's `!new` was refused (its name taken by
    // a live session), a later change of that session must not take the view away.
    else if (awaiting && !known && thread.title === awaiting.name) {
      state.awaitingSession = null;
      select(thread.id);
    }
  }

  // The supervisor ends every turn with a completion line (✅ done, ⏹️ interrupted,
  // ⚠️ failed): the turn is over, so "working" and Stop go at once, not when the last
  // typing signal lapses.
  const TURN_ENDED = /(^|\n)(✅|⏹️|⚠️)[^\n]*\s*$/u;

  function applyMessage(message) {
    state.version = Math.max(state.version, message.version);
    if (message.author === "bot" && TURN_ENDED.test(message.text) && state.typingUntil.delete(message.thread_id)) {
      renderTyping();
    }
    const loaded = state.messages.get(message.thread_id);
    // A change to a message older than the loaded pages shows when its page is fetched.
    if (loaded && state.more.get(message.thread_id) && message.seq < oldestSeq(message.thread_id)) return;
    if (!loaded) {
      if (message.thread_id !== state.selected) state.unread.add(message.thread_id);
      renderSidebar();
      return;
    }
    const known = loaded.get(message.id);
    if (known && known.version >= message.version) return;
    loaded.set(message.id, message);
    if (message.thread_id === state.selected) renderMessage(message);
    else { state.unread.add(message.thread_id); renderSidebar(); }
  }

  function snapshot(update) {
    const threadId = update.thread;
    const older = update.before !== null && update.before !== undefined;
    const loaded = older ? state.messages.get(threadId) || new Map() : new Map();
    for (const m of update.messages) {
      const known = loaded.get(m.id);
      if (!known || known.version < m.version) loaded.set(m.id, m);
    }
    const previous = older ? null : state.messages.get(threadId);
    if (previous) for (const [id, m] of previous) if (!loaded.has(id) || loaded.get(id).version < m.version) loaded.set(id, m);
    state.messages.set(threadId, loaded);
    state.more.set(threadId, update.more);
    // A turn that ended just before a (re)load was still said typing in the welcome.
    const newest = update.messages[update.messages.length - 1];
    if (!older && newest && newest.author === "bot" && TURN_ENDED.test(newest.text) && state.typingUntil.delete(threadId)) {
      renderTyping();
    }
    if (threadId !== state.selected) return;
    if (older) {
      const list = $("messages");
      renderThread(list.scrollHeight - list.scrollTop);
    } else renderThread();
  }

  function oldestSeq(threadId) {
    const loaded = state.messages.get(threadId);
    let oldest = Infinity;
    if (loaded) for (const m of loaded.values()) oldest = Math.min(oldest, m.seq);
    return oldest;
  }

  // views -----------------------------------------------------------------------------

  // Every selection says "open": its session's agent may have been suspended since the
  // page loaded the thread. A thread the page holds (kept current by the updates) asks
  // for no snapshot again.
  function select(threadId) {
    state.selected = threadId;
    localStorage.setItem("supervisor-selected", threadId);
    state.unread.delete(threadId);
    if (state.messages.has(threadId)) send({ type: "open", thread: threadId, held: true });
    else send({ type: "open", thread: threadId });
    renderSidebar();
    renderHeader();
    renderThread();
    closeSidebar();
  }

  function renderSidebar() {
    const list = $("threads");
    const items = [];
    for (const thread of state.threads.values()) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.thread = thread.id;
      if (thread.id === state.selected) button.setAttribute("aria-current", "true");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = thread.title;
      if (state.unread.has(thread.id)) name.classList.add("unread");
      if (thread.id !== "main") {
        const badge = document.createElement("span");
        badge.className = "state " + shownState(thread);
        badge.textContent = shownState(thread);
        name.append(badge);
      }
      button.append(name);
      if (thread.id !== "main") {
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = [thread.agent, thread.cwd].filter(Boolean).join(" · ");
        button.append(detail);
      }
      button.addEventListener("click", () => select(thread.id));
      li.append(button);
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  function renderHeader() {
    const thread = state.threads.get(state.selected);
    $("thread-title").textContent = thread ? thread.title : "Supervisor";
    $("thread-meta").textContent = thread && thread.id !== "main"
      ? [shownState(thread), thread.agent, thread.cwd].filter(Boolean).join(" · ") : "commands: !new NAME, !sessions, !help";
    renderTyping();
  }

  function renderThread(fromBottom) {
    const list = $("messages");
    list.replaceChildren();
    const loaded = state.messages.get(state.selected);
    if (loaded) {
      const rows = Array.from(loaded.values()).sort((a, b) => a.seq - b.seq);
      const fragment = document.createDocumentFragment();
      if (state.more.get(state.selected)) fragment.append(earlierNode());
      for (const m of rows) fragment.append(messageNode(m));
      if (!rows.length && state.selected === "main") fragment.append(firstStepsNode());
      list.append(fragment);
    }
    renderPending();
    list.scrollTop = fromBottom ? list.scrollHeight - fromBottom : list.scrollHeight;
  }

  // A fresh start shows an empty Commands thread; on a phone the sessions' list (and its
  // "+ New session") is behind ☰, and the header's command hint is hidden.
  function firstStepsNode() {
    const li = document.createElement("li");
    li.className = "first-steps";
    li.textContent = "No sessions yet. Start one with “+ New session” (in the ☰ menu on a small screen), or here with !new NAME DIRECTORY. !help lists the commands.";
    return li;
  }

  function earlierNode() {
    const li = document.createElement("li");
    li.className = "earlier";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Show earlier messages";
    button.addEventListener("click", () => {
      button.disabled = true;
      send({ type: "open", thread: state.selected, before: oldestSeq(state.selected) });
    });
    li.append(button);
    return li;
  }

  function renderMessage(message) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    const node = messageNode(message);
    list.querySelector("li.first-steps")?.remove();
    const existing = list.querySelector(`li[data-id="${CSS.escape(message.id)}"]`);
    if (existing) existing.replaceWith(node);
    else {
      let before = null;
      for (const li of list.querySelectorAll("li[data-seq]")) {
        if (Number(li.dataset.seq) > message.seq) { before = li; break; }
      }
      if (!before) before = list.querySelector("li.pending");
      list.insertBefore(node, before);
    }
    if (message.client_id) {
      const pending = list.querySelector(`li.pending[data-client="${CSS.escape(message.client_id)}"]`);
      if (pending) pending.remove();
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function messageNode(m) {
    const li = document.createElement("li");
    li.dataset.id = m.id;
    li.dataset.seq = m.seq;
    li.className = m.author + " " + m.kind;
    if (m.client_id) li.dataset.client = m.client_id;
    const body = document.createElement("div");
    body.className = "body";
    if (m.text) body.append(SupervisorRender.markdown(m.text));
    li.append(body);
    if (m.files && m.files.length) li.append(filesNode(m.files));
    if (m.kind === "choice") li.append(choiceNode(m));
    return li;
  }

  function filesNode(files) {
    const div = document.createElement("div");
    div.className = "files";
    for (const f of files) {
      const a = document.createElement("a");
      a.href = "/files/" + encodeURIComponent(f.id);
      a.setAttribute("download", "");
      a.textContent = "📄 " + f.name; // a file name is text, never markup
      div.append(a);
    }
    return div;
  }

  const LABELS = { allow_once: "Allow", allow_always: "Allow for this session", reject: "Deny", stop: "Stop" };

  function choiceNode(m) {
    if (m.outcome !== null && m.outcome !== undefined) {
      // Settled: the buttons are gone (the supervisor may have written the outcome
      // into the message itself, then there is no outcome line).
      if (!m.outcome) return document.createDocumentFragment();
      const div = document.createElement("div");
      div.className = "outcome";
      div.textContent = m.outcome;
      return div;
    }
    const div = document.createElement("div");
    div.className = "choices";
    for (const [kind, label] of m.options) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.option = kind;
      button.className = kind === "reject" ? "danger" : kind === "allow_once" ? "primary" : "";
      button.textContent = LABELS[kind] || label;
      button.addEventListener("click", () => {
        for (const b of div.querySelectorAll("button")) b.disabled = true;
        state.choiceNotes.delete(m.id);
        div.querySelector(".reason")?.remove();
        send(enqueue({ type: "choose", message: m.id, option: kind }));
      });
      div.append(button);
    }
    if (state.choiceNotes.has(m.id)) {
      const why = document.createElement("div");
      why.className = "reason";
      why.textContent = "Not done: " + state.choiceNotes.get(m.id);
      div.append(why);
    }
    return div;
  }

  function renderPending() {
    const list = $("messages");
    for (const old of list.querySelectorAll("li.pending, li.refused")) old.remove();
    for (const m of state.outbox) {
      if (m.type !== "post" || (m.thread || "main") !== state.selected) continue;
      const loaded = state.messages.get(state.selected);
      if (loaded && Array.from(loaded.values()).some((r) => r.client_id === m.id)) continue;
      list.append(unsentItem(m, "pending"));
    }
    for (const [id, { message: m, reason, files }] of state.refused.entries()) {
      if ((m.thread || "main") !== state.selected) continue;
      const li = unsentItem(m, "refused");
      const why = document.createElement("div");
      why.className = "reason";
      // Files the page no longer holds (it was reloaded since they were chosen) cannot
      // come back: the server keeps no upload of a refused message.
      const lost = files ? 0 : m.attaching || m.files.length;
      const attachAgain = lost ? ` (attach its ${lost === 1 ? "file" : lost + " files"} again)` : "";
      why.textContent = "Not sent: " + reason + attachAgain + " ";
      // Its words and files back in the composer, to mend or send as they are.
      const again = document.createElement("button");
      again.type = "button";
      again.className = "again";
      again.textContent = "Edit again";
      again.addEventListener("click", () => {
        const box = $("text");
        box.value = box.value ? box.value + "\n" + m.text : m.text;
        if (files) {
          state.files.push(...files);
          renderAttachments();
        }
        forgetRefused(id);
        renderPending();
        box.focus();
      });
      why.append(again);
      li.append(why);
      list.append(li);
    }
  }

  // A message of this page's that the server has not taken (yet, or ever: "refused").
  function unsentItem(m, how) {
    const li = document.createElement("li");
    li.className = "user text " + how;
    li.dataset.client = m.id;
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = m.text;
    li.append(body);
    return li;
  }

  // The supervisor says a session is "active"; whether a turn runs shows in its typing
  // signal (and a prompt just sent): busy while that lasts, idle otherwise.
  function shownState(thread) {
    if (thread.state !== "active") return thread.state;
    return (state.typingUntil.get(thread.id) || 0) > Date.now() ? "busy" : "idle";
  }

  let shownBusy = "";
  function renderTyping() {
    const busyNow = Array.from(state.threads.values()).filter((t) => shownState(t) === "busy").map((t) => t.id).join();
    if (busyNow !== shownBusy) {
      shownBusy = busyNow;
      renderSidebar();
      const selected = state.threads.get(state.selected);
      if (selected && selected.id !== "main") {
        $("thread-meta").textContent = [shownState(selected), selected.agent, selected.cwd].filter(Boolean).join(" · ");
      }
    }
    const thread = state.threads.get(state.selected);
    // A turn's end sets the thread idle: the last typing signal must not outlive it.
    const typing = (state.typingUntil.get(state.selected) || 0) > Date.now() && !(thread && thread.state === "idle");
    const busy = typing || (thread && thread.state === "busy");
    $("typing").hidden = !typing;
    $("stop").hidden = !busy || state.selected === "main";
  }
  setInterval(renderTyping, 500);

  // actions ---------------------------------------------------------------------------

  function post(event) {
    event.preventDefault();
    const text = $("text").value;
    const files = state.files;
    if (!text.trim() && !files.length) return;
    // The server's limits, checked here so the text stays in the box to be shortened.
    const length = Array.from(text).length; // code points, as the server counts
    if (length > state.limits.max_text) {
      showProblem(`The message is ${length.toLocaleString("en")} characters long; the limit is ${state.limits.max_text.toLocaleString("en")}. Shorten it or attach it as a file.`);
      return;
    }
    if (files.length > state.limits.max_files) {
      showProblem(`${files.length} files attached; the limit is ${state.limits.max_files} per message.`);
      return;
    }
    const big = overLimit(files);
    if (big) {
      showProblem(`${overTheLimit(big)}. Remove it, or share it another way.`);
      return;
    }
    showProblem("");
    const thread = state.selected === "main" ? null : state.selected;
    const over = thread && ["ended", "failed"].includes(state.threads.get(thread)?.state);
    if (thread && !over && state.connected && !text.trim().startsWith("!")) {
      // A prompt starts a turn (or waits for the running one): Stop is useful from now
      // on, before the supervisor's first typing signal. Not while the supervisor is
      // down: nothing works on it until it is back (and its typing signal says so).
      state.typingUntil.set(thread, Date.now() + TYPING_MS);
      renderTyping();
    }
    // `attaching`: how many files still wait to be uploaded (the files themselves live in
    // this page's memory only).
    const message = enqueue(files.length ? { type: "post", thread, text, files: [], attaching: files.length }
      : { type: "post", thread, text, files: [] });
    if (files.length) {
      state.uploads.set(message.id, files);
      state.attached.set(message.id, files);
    }
    $("text").value = "";
    state.files = [];
    renderAttachments();
    renderPending();
    $("messages").scrollTop = $("messages").scrollHeight;
    if (state.connected) flushOutbox();
  }

  function renderAttachments() {
    const list = $("attachments");
    list.replaceChildren(...state.files.map((file, i) => {
      const li = document.createElement("li");
      li.textContent = file.name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Remove " + file.name);
      remove.addEventListener("click", () => { state.files.splice(i, 1); renderAttachments(); });
      li.append(remove);
      return li;
    }));
  }

  // A phone's keyboard has no Shift+Enter: there Enter starts a new line and Send sends.
  const ENTER_SENDS = !matchMedia("(pointer: coarse)").matches;

  function openSidebar() {
    $("sidebar").classList.add("open");
    $("menu").setAttribute("aria-expanded", "true");
  }
  function closeSidebar() {
    $("sidebar").classList.remove("open");
    $("menu").setAttribute("aria-expanded", "false");
  }

  function wire() {
    $("composer").addEventListener("submit", post);
    $("text").addEventListener("keydown", (e) => {
      if (ENTER_SENDS && e.key === "Enter" && !e.shiftKey && !e.isComposing) post(e);
    });
    if (!ENTER_SENDS) $("text").placeholder = "Message";
    $("files").addEventListener("change", (e) => {
      state.files.push(...Array.from(e.target.files));
      e.target.value = "";
      renderAttachments();
    });
    $("stop").addEventListener("click", () => {
      send(enqueue({ type: "stop", thread: state.selected }));
    });
    $("menu").addEventListener("click", () => {
      if ($("sidebar").classList.contains("open")) closeSidebar(); else openSidebar();
    });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeSidebar(); });
    // On a small screen the open sidebar covers most of the thread: a tap on the rest closes it.
    $("thread").addEventListener("click", () => { if ($("sidebar").classList.contains("open")) closeSidebar(); });
    $("new-toggle").addEventListener("click", () => {
      const form = $("new-session");
      form.hidden = !form.hidden;
      $("new-toggle").setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) $("new-name").focus();
    });
    // The browser's own "match the requested format" does not say which format.
    $("new-name").addEventListener("input", (e) => {
      const name = e.target;
      name.setCustomValidity(name.validity.patternMismatch
        ? "A session's name is one word: letters, digits, '.', '_' or '-' (no spaces)." : "");
    });
    $("new-persona").addEventListener("change", labelDefaultAgent);
    $("new-session").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = $("new-name").value.trim();
      if (!name) return;
      const asked = enqueue({
        type: "new", name, cwd: $("new-cwd").value.trim(),
        agent: $("new-agent").value, persona: $("new-persona").value,
      });
      state.awaitingSession = { name, id: asked.id, until: 0 }; // until: set by its ack
      send(asked);
      $("new-name").value = "";
      $("new-session").hidden = true;
      $("new-toggle").setAttribute("aria-expanded", "false");
    });
  }

  // The supervisor's links to a session ("#thread/ID") open that thread.
  // A link to a message of a loaded thread ("#thread/MESSAGE") opens that thread.
  function followHash() {
    const match = /^#thread\/([A-Za-z0-9_-]+)$/.exec(location.hash);
    if (!match) return;
    let thread = state.threads.has(match[1]) ? match[1] : null;
    if (!thread) {
      for (const [id, loaded] of state.messages) if (loaded.has(match[1])) thread = id;
    }
    if (thread) select(thread);
    history.replaceState(null, "", location.pathname);  // the same link works twice
  }
  window.addEventListener("hashchange", followHash);

  wire();
  splitOldLists();
  state.refused = loadRefused();
  showConnection();
  watchLeftEntries();
  connect();
})();
