/* The labelling loop: one page, answers sent as JSON (labeling/api.py describes the API).
 * Without JavaScript the same page is a plain form, one page load per answer.
 * In the researcher's preview ("mode": "preview") a stand-in for the API lives in
 * the page and nothing is sent anywhere.
 */
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("annotator-config").textContent);
  const form = document.getElementById("label-form");
  const stage = document.getElementById("stage");
  const image = document.getElementById("stimulus");
  const mask = document.getElementById("mask");
  const progress = document.getElementById("progress");
  const progressText = document.getElementById("progress-text");
  const feedback = document.getElementById("feedback");
  const feedbackText = document.getElementById("feedback-text");
  const continueButton = document.getElementById("continue");
  const answers = form.querySelector(".answers");
  const buttons = Array.from(form.querySelectorAll("button[name=value]"));
  const csrfInput = form.querySelector("input[name=csrfmiddlewaretoken]");

  let state = null; // the trial on screen, as api/next describes it
  let onset = null; // the frame time (requestAnimationFrame's) of the first frame with the image
  // Timed studies: the image's time on screen, from the first frame painted with it to the
  // first frame painted without it (frame times, not timers: a timer fires between frames).
  let exposure = null; // {start, end (null while shown), frame (the last frame interval)}
  let accepting = false; // whether an answer counts now
  let timers = [];
  let shownObjectUrl = null;
  const preloaded = new Map(); // image URL -> Promise of an object URL

  class ApiError extends Error {
    constructor(message, body) {
      super(message);
      this.body = body;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function say(message, urgent = false) {
    feedback.className = urgent ? "feedback wrong" : "feedback";
    feedbackText.setAttribute("role", urgent ? "alert" : "status");
    feedbackText.textContent = message;
  }

  // ---- talking to the server (or to the preview's stand-in) ----

  async function request(url, options) {
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(url, { credentials: "same-origin", cache: "no-store", ...options });
      } catch (offline) {
        // Re-sending is safe: the same client_key is answered with the label already stored.
        say("The connection was lost. Trying again\u2026", true);
        await sleep(Math.min(8000, 500 * 2 ** attempt));
        continue;
      }
      if (response.status === 503) {
        say("Many people are labelling right now; one moment please.");
        await sleep(1000 * (Number(response.headers.get("Retry-After")) || 2));
        continue;
      }
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new ApiError(body.error || "Something went wrong; please reload the page.", body);
      }
      return body;
    }
  }

  const live = {
    next: () => request(config.urls.next, { method: "GET" }),
    answer: (body) =>
      request(config.urls.labels, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfInput.value },
        body: JSON.stringify(body),
      }),
  };

  function previewStandIn(items) {
    let index = 0;
    const phaseItems = (phase) => items.filter((item) => item.phase === phase);
    const stateAt = (i) => {
      if (i >= items.length) return { done: true, redirect: config.done_url };
      const inPhase = phaseItems(items[i].phase);
      return {
        assignment: `preview-${i}`,
        image: items[i].image,
        progress: { done: inPhase.indexOf(items[i]), total: inPhase.length },
        phase: items[i].phase,
        next_image: !config.timed && i + 1 < items.length ? items[i + 1].image : null,
      };
    };
    return {
      next: async () => stateAt(index),
      answer: async (body) => {
        const item = items[index];
        index += 1;
        const reply = { stored: true, next: stateAt(index) };
        if (item.phase === "practice" && item.answer !== null) {
          const correct = body.value === item.answer;
          const message = body.value === null ? "Time ran out." : correct ? "Correct!" : "Not quite:";
          reply.feedback = { correct, message: `${message} This one is \u201c${item.answer_text}\u201d.` };
        }
        return reply;
      },
    };
  }

  const server = config.mode === "preview" ? previewStandIn(config.items) : live;

  async function nextState() {
    try {
      return await server.next();
    } catch (error) {
      if (error.body && error.body.redirect) return { done: true, redirect: error.body.redirect };
      say(error.message, true);
      await sleep(3000);
      return nextState();
    }
  }

  // ---- showing a trial ----

  function fetchObjectUrl(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then((response) => {
      if (!response.ok) throw new Error(`image ${response.status}`);
      return response.blob().then((blob) => URL.createObjectURL(blob));
    });
  }

  function preload(url) {
    if (url && !preloaded.has(url)) {
      const pending = fetchObjectUrl(url);
      pending.catch(() => preloaded.delete(url)); // shown later by a plain load instead
      preloaded.set(url, pending);
    }
  }

  async function imageSource(url) {
    const pending = preloaded.get(url) || fetchObjectUrl(url);
    preloaded.delete(url);
    try {
      return await pending;
    } catch (failed) {
      return url;
    }
  }

  function fit() {
    // The largest whole-number scale that fits: every image pixel stays a crisp square. The
    // stylesheet gives the stage what the viewport leaves beside the progress bar and the
    // answers, so that every answer stays on screen (a phone held sideways included).
    const width = image.naturalWidth;
    const height = image.naturalHeight;
    if (!width || !height) return;
    const border = 2;
    const room = Math.min(stage.clientWidth || window.innerWidth, 640) - border;
    const laidOut = stage.clientHeight - border;
    const tall = laidOut >= height ? laidOut : Math.max(window.innerHeight * 0.5, 160);
    // An image larger than the room (a 224-pixel photo on a phone held sideways) shrinks
    // smoothly instead: square pixels only make sense at whole-number scales.
    const fits = Math.min(room / width, tall / height);
    const scale = fits >= 1 ? Math.floor(fits) : fits;
    for (const element of [image, mask]) {
      element.style.width = `${Math.floor(width * scale)}px`;
      element.style.height = `${Math.floor(height * scale)}px`;
      element.classList.toggle("pixels", fits >= 1);
    }
    mask.width = width;
    mask.height = height;
  }

  function drawMask() {
    // Random black and white pixels at the image's own resolution: a noise mask.
    const context = mask.getContext("2d");
    const pixels = context.createImageData(mask.width, mask.height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const value = Math.random() < 0.5 ? 0 : 255;
      pixels.data.set([value, value, value, 255], i);
    }
    context.putImageData(pixels, 0, 0);
  }

  function setProgress(trial) {
    const word = trial.phase === "practice" ? "Practice image" : "Image";
    progress.max = trial.progress.total;
    progress.value = trial.progress.done;
    progressText.textContent = `${word} ${trial.progress.done + 1} of ${trial.progress.total}`;
  }

  function clearTimers() {
    timers.forEach(clearTimeout);
    timers = [];
  }

  function startTimers() {
    if (!config.timed) return;
    if (config.deadline_ms) timers.push(setTimeout(timeOut, config.deadline_ms));
  }

  function hideImage(shown, frameTime) {
    // Called in a frame's requestAnimationFrame callback: that frame is the first without it.
    if (shown.end !== null) return;
    drawMask();
    image.classList.add("masked");
    mask.hidden = false;
    shown.end = frameTime;
  }

  function startExposure(firstFrame) {
    // frame: the display's refresh interval, the shortest gap seen between frames (a busy
    // page drops frames, and a gap that spans two would end the exposure a frame early).
    const shown = { start: firstFrame, end: null, frame: 1000 / 60 };
    exposure = shown;
    let last = firstFrame;
    let measured = false;
    const step = (frameTime) => {
      if (exposure !== shown || shown.end !== null) return;
      if (frameTime > last) {
        shown.frame = measured ? Math.min(shown.frame, frameTime - last) : frameTime - last;
        measured = true;
      }
      last = frameTime;
      // The image goes at the frame nearest its exposure: half a frame early rather than
      // most of a frame late.
      if (frameTime - shown.start + shown.frame / 2 >= config.exposure_ms) hideImage(shown, frameTime);
      else requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  function measuredExposure() {
    // Timed: the image leaves the screen (at the next frame, if an answer came first) and
    // its time on screen is measured; null where no frame came (a hidden tab).
    const shown = exposure;
    if (!config.timed || shown === null) return Promise.resolve(null);
    const measured = () => Math.round((shown.end - shown.start) * 10) / 10;
    if (shown.end !== null) return Promise.resolve(measured());
    return new Promise((resolve) => {
      const fallback = setTimeout(() => resolve(null), 250);
      requestAnimationFrame((frameTime) => {
        clearTimeout(fallback);
        hideImage(shown, frameTime);
        resolve(measured());
      });
    });
  }

  async function show(trial) {
    if (trial.done) {
      window.location.assign(trial.redirect);
      return;
    }
    state = trial;
    form.elements.assignment.value = trial.assignment; // the plain form answers this item too
    accepting = false;
    exposure = null;
    clearTimers();
    setProgress(trial);
    image.classList.add("pending");
    mask.hidden = true;
    releaseTappedAnswer();
    if (filter) {
      filter.value = "";
      narrowAnswers();
    }
    // A small image comes inline (a data: URI); a larger one was preloaded or is fetched now,
    // but for the first, which the page's own <img> already loads: each image comes once.
    const preset = image.getAttribute("src");
    const source = trial.image_data || (preset === trial.image ? preset : await imageSource(trial.image));
    if (preset !== source) image.src = source;
    try {
      await image.decode();
    } catch (undecodable) {
      say("This image could not be shown; please reload the page.", true);
    }
    if (shownObjectUrl) URL.revokeObjectURL(shownObjectUrl);
    shownObjectUrl = source.startsWith("blob:") ? source : null;
    fit();
    image.classList.remove("pending", "masked");
    image.alt = `Image ${trial.progress.done + 1} to label`;
    requestAnimationFrame((frameTime) => {
      // Runs before the first frame that paints the image: frameTime is that frame's time.
      onset = frameTime;
      if (config.timed) startExposure(frameTime);
      accepting = true;
      answers.removeAttribute("aria-busy");
      startTimers();
      if (filter && window.matchMedia("(hover: hover)").matches) filter.focus({ preventScroll: true });
    });
    if (!trial.next_image_data) preload(trial.next_image); // a timed study sends none
  }

  // ---- answering ----

  // A tapped or clicked answer keeps the focus, and a touch screen keeps its :hover, onto the
  // next image, where it looks chosen already: the next trial lets go of it. An answer chosen
  // by keyboard keeps its focus ring, which says where the keyboard is.
  let pointerChose = false;
  form.addEventListener("pointerdown", () => {
    pointerChose = true;
  });

  function releaseTappedAnswer() {
    const focused = document.activeElement;
    if (pointerChose && focused instanceof HTMLElement && buttons.includes(focused)) focused.blur();
    pointerChose = false;
  }

  function newKey() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function elapsed() {
    return Math.round((performance.now() - onset) * 10) / 10;
  }

  async function answer(value) {
    if (!accepting) return; // a double click or a key held down sends one answer
    accepting = false;
    const ms = elapsed();
    clearTimers();
    const body = { assignment: state.assignment, value, client_key: newKey(), client_response_ms: ms };
    if (config.timed) body.exposure_ms = await measuredExposure();
    send(body);
  }

  async function timeOut() {
    if (!accepting) return;
    accepting = false;
    const ms = elapsed();
    say("Time is up for this image.");
    const body = {
      assignment: state.assignment,
      value: null,
      timed_out: true,
      client_key: newKey(),
      client_response_ms: ms,
    };
    if (config.timed) body.exposure_ms = await measuredExposure();
    send(body);
  }

  function waitForContinue(message, correct) {
    feedback.className = `feedback ${correct ? "correct" : "wrong"}`;
    feedbackText.setAttribute("role", "status");
    feedbackText.textContent = message;
    continueButton.hidden = false;
    continueButton.focus();
    return new Promise((resolve) => {
      continueButton.onclick = () => {
        continueButton.hidden = true;
        continueButton.onclick = null;
        feedbackText.textContent = "";
        resolve();
      };
    });
  }

  async function send(body) {
    answers.setAttribute("aria-busy", "true");
    let reply;
    try {
      reply = await server.answer(body);
    } catch (error) {
      say(error.message, true);
      await sleep(1500);
      show(await nextState()); // the server knows which image is current
      return;
    }
    if (reply.feedback) {
      const last = reply.next && !reply.next.done && reply.next.phase === "main";
      const end = last ? " That was the last practice image: the study starts now." : "";
      await waitForContinue(reply.feedback.message + end, reply.feedback.correct);
    } else if (reply.timed_out) {
      say(reply.message); // answered after the deadline: the server took it as a timeout
      await sleep(1500);
    } else if (body.timed_out) {
      await sleep(800); // long enough to read "Time is up"
    }
    say("");
    show(reply.next || (await nextState()));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = event.submitter;
    if (button && button.name === "value") answer(Number(button.value));
  });

  // Elements that act on Enter or Space themselves (the Continue button among them).
  const INTERACTIVE =
    "a[href], button, input, select, textarea, summary, [contenteditable], [role=button], [role=link]";
  const focusedInteractive = (target) => target instanceof Element && target.closest(INTERACTIVE) !== null;

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    pointerChose = false;
    if (!continueButton.hidden) {
      // Enter (or Space) continues after feedback, unless the focus is on a link, button or field:
      // that one does what it does (the "Withdraw" link must withdraw, not continue).
      if ((event.key === "Enter" || event.key === " ") && !focusedInteractive(event.target)) {
        event.preventDefault();
        continueButton.click();
      }
      return;
    }
    const key = event.key.toLowerCase();
    const button = buttons.find((candidate) => candidate.dataset.key && candidate.dataset.key === key);
    if (button) {
      event.preventDefault();
      answer(Number(button.value));
    }
  });

  // Beyond ten classes: a field narrows the answers to the names holding what is typed, and
  // Enter chooses the one left ("can't tell" stays in view, outside the count).
  const filter = document.getElementById("answer-filter");
  const classButtons = buttons.filter((button) => Number(button.value) !== -1);
  function narrowAnswers() {
    const typed = filter ? filter.value.trim().toLowerCase() : "";
    for (const button of classButtons) {
      button.hidden = typed !== "" && !button.textContent.toLowerCase().includes(typed);
    }
  }
  if (filter) {
    filter.addEventListener("input", narrowAnswers);
    filter.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault(); // the form's own Enter would send the first button, not the answer
      const left = classButtons.filter((button) => !button.hidden);
      if (left.length === 1 && continueButton.hidden) answer(Number(left[0].value));
    });
  }

  window.addEventListener("resize", fit);
  answers.setAttribute("aria-busy", "true"); // until the first image is on screen
  show(config.state);
})();
