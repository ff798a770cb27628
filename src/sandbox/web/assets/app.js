// The sandbox's chat page: swaps in the fragments the server pushes over
// server-sent events (/live) and posts what the person does to the control
// API (mounted under /control). No framework, no build step.
'use strict';

const control = document.body.dataset.control;
const writeHeader = document.body.dataset.writeHeader;
const $ = (selector, root = document) => root.querySelector(selector);

/** The user whose chat is shown (the chat fragment says; it can change). */
function currentUser() {
  const head = $('[data-chat-user]');
  return head ? head.dataset.chatUser : document.body.dataset.user;
}

/** The chat shown: `{bot}` for a private chat, `{group}` for a group. */
function currentChat() {
  const head = $('[data-chat-user]');
  const data = head ? head.dataset : {};
  const group = data.chatGroup || document.body.dataset.group;
  if (group) return { group };
  return { bot: data.chatBot || document.body.dataset.bot };
}

/** The page's query: who the person is and which chat is shown. */
function pageQuery() {
  const params = new URLSearchParams();
  const user = currentUser();
  if (user) params.set('user', user);
  const chat = currentChat();
  if (chat.group) params.set('group', chat.group);
  else if (chat.bot) params.set('bot', chat.bot);
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** `?bot=ID` for control calls about the bot shown (the first one in a group). */
function botQuery() {
  const chat = currentChat();
  return chat.bot ? `?bot=${chat.bot}` : '';
}

/** POSTs JSON to the control API; throws with the API's error message. */
async function post(path, body) {
  const response = await fetch(control + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [writeHeader]: '1' },
    body: JSON.stringify(body),
  });
  let answer = null;
  try { answer = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((answer && answer.error) || `${response.status} ${response.statusText}`);
  }
  return answer;
}

function toast(text, kind) {
  const box = $('#toast');
  box.textContent = text;
  box.className = `show ${kind || ''}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ''; }, 4000);
}

function alertBox(text) {
  $('#alert-text').textContent = text;
  $('#alert').showModal();
}

function fail(error) { toast(error.message || String(error), 'error'); }

// --- live fragments --------------------------------------------------------

/** Callback buttons whose click waits for the bot: `${message}:${data}`. */
const pending = new Set();
let keyboardFor = null;     // the message whose reply keyboard is shown
let keyboardHidden = false; // the person chose to type instead
let forceReplyFor = null;

function markPending() {
  for (const button of document.querySelectorAll('.ikb[data-kind=callback]')) {
    button.classList.toggle('pending', pending.has(`${button.dataset.msg}:${button.dataset.data}`));
  }
}

/** The reply keyboard replaces the input; a force reply focuses it. */
function applyKeyboard() {
  const state = $('#kb-state');
  const input = $('#text');
  if (!state) return;
  const keyboard = state.dataset.keyboard || null;
  if (keyboard !== keyboardFor) { keyboardFor = keyboard; keyboardHidden = false; }
  const force = state.dataset.forceReply || null;
  if (force && force !== forceReplyFor) keyboardHidden = true;
  const showKeyboard = Boolean(keyboard) && !keyboardHidden;
  document.body.classList.toggle('with-keyboard', showKeyboard);
  const board = $('.reply-kb');
  if (board) board.hidden = !showKeyboard;
  $('#show-keyboard').hidden = !(keyboard && keyboardHidden);
  input.placeholder = state.dataset.placeholder || 'Message';
  if (force && force !== forceReplyFor) input.focus();
  forceReplyFor = force;
}

function swap(name, html) {
  const target = document.getElementById(name);
  if (!target) return;
  const messages = $('#messages');
  const atBottom = !messages
    || messages.scrollHeight - messages.scrollTop - messages.clientHeight < 60;
  target.innerHTML = html;
  if (name === 'chat') {
    markPending();
    const now = $('#messages');
    if (now && atBottom) now.scrollTop = now.scrollHeight;
  }
  if (name === 'keyboard') applyKeyboard();
}

async function refresh(name) {
  const response = await fetch(`/fragments/${name}${pageQuery()}`);
  if (response.ok) swap(name, await response.text());
}

function connect() {
  const live = new EventSource(`/live${pageQuery()}`);
  for (const name of ['users', 'chats', 'chat', 'keyboard', 'stats', 'worker']) {
    live.addEventListener(name, (event) => swap(name, event.data));
  }
  live.onopen = () => document.body.classList.remove('offline');
  live.onerror = () => document.body.classList.add('offline');
}

// --- what the person does --------------------------------------------------

async function clickCallback(button) {
  const key = `${button.dataset.msg}:${button.dataset.data}`;
  if (pending.has(key)) return;
  pending.add(key);
  markPending();
  try {
    const outcome = await post(`/users/${currentUser()}/click`, {
      message_id: Number(button.dataset.msg),
      data: button.dataset.data,
    });
    if (outcome.error) {
      toast(outcome.error === 'BOT_RESPONSE_TIMEOUT'
        ? 'The bot did not answer in time (BOT_RESPONSE_TIMEOUT)' : outcome.error, 'error');
      return;
    }
    const answer = outcome.answer || {};
    if (answer.message) {
      if (answer.alert) alertBox(answer.message); else toast(answer.message);
    }
    if (answer.url) toast(`The bot answered with a link: ${answer.url}`);
  } catch (error) {
    fail(error);
  } finally {
    pending.delete(key);
    markPending();
  }
}

function whereAmI() {
  const form = $('#where');
  return {
    latitude: Number(form.elements.latitude.value),
    longitude: Number(form.elements.longitude.value),
  };
}

async function pressKeyboard(button) {
  const body = { message_id: Number(button.dataset.msg), text: button.dataset.text };
  if (button.dataset.type === 'request_location') body.location = whereAmI();
  await post(`/users/${currentUser()}/click`, body);
}

/** Sends as the chosen user: to the bot shown, or in the group shown. */
async function sendMessage(body) {
  const chat = currentChat();
  if (chat.group) {
    await post(`/groups/${chat.group}/messages`, { ...body, from: Number(currentUser()) });
  } else {
    await post(`/users/${currentUser()}/messages${botQuery()}`, body);
  }
}

async function sendFile(file) {
  const body = file.type.startsWith('image/')
    ? { photo: { mime_type: file.type, size: file.size } }
    : { document: { file_name: file.name, mime_type: file.type || 'application/octet-stream', size: file.size } };
  await sendMessage(body);
}

async function fault(kind, form) {
  const user = Number(currentUser());
  const bodies = {
    drop: () => ({ drop_connections: true }),
    latency: () => ({ latency_ms: Number(form.elements.ms.value) }),
    flood: () => ({ error: `FLOOD_WAIT_${form.elements.seconds.value}`, times: Number(form.elements.times.value) }),
    error: () => ({ user_id: user, error: form.elements.error.value }),
    clear: () => ({ user_id: user, error: null }),
    'limits-on': () => ({ limits: true }),
    'limits-off': () => ({ limits: false }),
    'blackhole-on': () => ({ blackhole: true }),
    'blackhole-off': () => ({ blackhole: false }),
  };
  const done = {
    drop: 'Connections dropped: the worker reconnects',
    latency: 'Latency set',
    flood: 'The bot\'s next sends get FLOOD_WAIT',
    error: 'The bot\'s sends to this chat fail',
    clear: 'This chat\'s injected error is cleared',
    'limits-on': 'Flood limits on',
    'limits-off': 'Flood limits off',
    'blackhole-on': 'The bot\'s connections are a black hole now',
    'blackhole-off': 'The bot\'s connections are answered again',
  };
  await post(`/faults${botQuery()}`, bodies[kind]());
  toast(done[kind]);
  await refresh('stats');
}

/** Runs an action; its failure becomes a red toast. */
function attempt(action) { action().catch(fail); }

document.addEventListener('click', (event) => {
  const button = event.target.closest('button');
  if (!button || button.disabled) return;
  if (button.matches('.ikb[data-kind=callback]')) attempt(() => clickCallback(button));
  else if (button.matches('.ikb[data-kind=copy]')) {
    attempt(async () => {
      if (navigator.clipboard) await navigator.clipboard.writeText(button.dataset.copy);
      toast(`Copied: ${button.dataset.copy}`);
    });
  } else if (button.matches('.rkb')) attempt(() => pressKeyboard(button));
  else if (button.id === 'hide-keyboard') { keyboardHidden = true; applyKeyboard(); $('#text').focus(); }
  else if (button.id === 'show-keyboard') { keyboardHidden = false; applyKeyboard(); }
  else if (button.id === 'attach') $('#file').click();
  else if (button.id === 'location') $('#where').hidden = !$('#where').hidden;
  else if (button.dataset.fault) attempt(() => fault(button.dataset.fault, button.closest('form')));
});

document.addEventListener('submit', (event) => {
  const form = event.target;
  if (form.method === 'dialog') return;
  event.preventDefault();
  if (form.dataset.fault) { attempt(() => fault(form.dataset.fault, form)); return; }
  switch (form.id) {
    case 'send': {
      const input = $('#text');
      const text = input.value;
      if (!text.trim()) return;
      attempt(async () => { await sendMessage({ text }); input.value = ''; });
      break;
    }
    case 'where':
      attempt(async () => { await sendMessage({ location: whereAmI() }); form.hidden = true; });
      break;
    case 'start': {
      const payload = form.elements.payload.value.trim();
      attempt(async () => {
        await sendMessage({ text: payload ? `/start ${payload}` : '/start' });
        form.elements.payload.value = '';
      });
      break;
    }
    case 'new-group': {
      const members = [Number(currentUser())];
      for (const box of form.querySelectorAll('input[name=member]:checked')) members.push(Number(box.value));
      const body = {
        title: form.elements.title.value,
        kind: form.elements.kind.value,
        bot: form.elements.bot.value,
        members,
      };
      attempt(async () => {
        const created = await post(`/groups${botQuery()}`, body);
        window.location.href = `/?user=${currentUser()}&group=${created.id}`;
      });
      break;
    }
    case 'new-user': {
      const body = { first_name: form.elements.first_name.value };
      if (form.elements.username.value.trim()) body.username = form.elements.username.value.trim();
      attempt(async () => {
        const created = await post('/users', body);
        window.location.href = `/?user=${created.id}`;
      });
      break;
    }
    default:
      break;
  }
});

$('#file').addEventListener('change', (event) => {
  const file = event.target.files[0];
  if (file) attempt(async () => { await sendFile(file); event.target.value = ''; });
});

applyKeyboard();
const messages = $('#messages');
if (messages) messages.scrollTop = messages.scrollHeight;
connect();
