// Markdown from the agent (and the person) into DOM nodes that can run nothing.
//
// marked turns Markdown into HTML; DOMPurify removes every script, event handler,
// javascript: URL and unknown element from it before it touches the page; the result is
// parsed as a sanitised fragment (RETURN_DOM_FRAGMENT), never assigned as a string to
// innerHTML. The Content-Security-Policy (script-src 'self') is a second wall.
(function () {
  "use strict";
  const SANITIZE = {
    RETURN_DOM_FRAGMENT: true,
    USE_PROFILES: { html: true }, // no SVG or MathML: Markdown needs neither
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    // No id or name: the page finds its own elements by id (the composer is `text`), and
    // an earlier element of an answer's with the same id would be found instead.
    FORBID_ATTR: ["style", "srcset", "id", "name"],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|\/|#)/i,
  };

  // Set once: passing a config to every sanitize() call rebuilds its allow-lists each
  // time, which made a 100-message thread take over a second to render.
  DOMPurify.setConfig(SANITIZE);

  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && (node.getAttribute("href") || "").startsWith("#")) {
      return; // a link to a thread of this page stays in this tab
    }
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
    if (node.tagName === "IMG") {
      // Images from the agent could beacon anywhere; only the page's own files show.
      const src = node.getAttribute("src") || "";
      if (!src.startsWith("/files/")) node.removeAttribute("src");
    }
  });

  const TOOL = /^(🔧|❌)/u;
  const COMPLETION = /^(✅|⏹️|⚠️)/u;

  function markdown(text) {
    const html = marked.parse(text, { gfm: true, breaks: true, async: false });
    const fragment = DOMPurify.sanitize(html);
    decorate(fragment);
    return fragment;
  }

  // The core's text conventions, shown the web's way: thinking quotes collapsed, tool
  // lines and the completion line styled. Works on sanitised nodes only.
  function decorate(fragment) {
    for (const quote of Array.from(fragment.querySelectorAll("blockquote"))) {
      const first = quote.textContent.trimStart();
      if (!first.startsWith("💭")) continue;
      const details = document.createElement("details");
      details.className = "thinking";
      const summary = document.createElement("summary");
      summary.textContent = "Thinking";
      details.append(summary, ...Array.from(quote.childNodes));
      quote.replaceWith(details);
    }
    linkThreads(fragment);
    for (const p of Array.from(fragment.querySelectorAll("p"))) {
      const text = p.textContent.trimStart();
      if (TOOL.test(text)) p.classList.add("tool");
      else if (COMPLETION.test(text)) p.classList.add("completion");
    }
  }

  // The supervisor writes a session's link as "#thread/ID" (its permalink): made a link
  // here, built from text nodes, so nothing of the text is ever parsed as markup.
  const THREAD_LINK = /#thread\/[A-Za-z0-9_-]+/g;
  function linkThreads(fragment) {
    const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.parentElement || !node.parentElement.closest("a, code, pre")) found.push(node);
    }
    for (const node of found) {
      const text = node.nodeValue;
      if (!text.includes("#thread/")) continue;
      const parts = document.createDocumentFragment();
      let at = 0;
      for (const match of text.matchAll(THREAD_LINK)) {
        parts.append(text.slice(at, match.index));
        const a = document.createElement("a");
        a.href = match[0];
        a.textContent = "open the thread";
        parts.append(a);
        at = match.index + match[0].length;
      }
      parts.append(text.slice(at));
      node.replaceWith(parts);
    }
  }

  window.SupervisorRender = { markdown };
})();
