// courier's operator dashboard. Reads /api/* with the cookie the page was opened with,
// follows /api/events (server-sent events from the registry's event feed) to update
// without reloading, and reads a fresh snapshot every few seconds. No build step, no
// dependency: plain DOM, and text is only ever set as text.
'use strict';

(() => {
  const SNAPSHOT_MS = 3000;
  const SLOW_SNAPSHOT_MS = 10000;
  const TICK_MS = 250;
  const ROWS = 50;
  const MAX_EVENTS = 50;
  const GONE = new Set(['expired', 'cancelled', 'revoked', 'replaced']);

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const shortKey = (key) => key.replace(/^ed25519:/, '').slice(0, 12) + '…';
  const shortLease = (lease) => lease.slice(0, 8);
  const duration = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  };
  const ago = (atMs) => (atMs ? `${duration(Date.now() - atMs)} ago` : '–');
  const clock = (atMs) => new Date(atMs).toLocaleTimeString();

  function setStatus(state, text) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  async function get(path) {
    const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 401) {
      setStatus('refused', 'token refused: open the address the registry printed');
      throw new Error('refused');
    }
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    return r.json();
  }

  // A table read a page at a time: the cursors of the pages before, this page's, the next.
  function pager(name, load) {
    const st = { before: [], cursor: null, next: null, busy: false };
    const prev = $(`${name}-prev`);
    const next = $(`${name}-next`);
    async function refresh() {
      if (st.busy) return;
      st.busy = true;
      try {
        const page = await load(st.cursor);
        st.next = page.next || null;
        prev.disabled = st.before.length === 0;
        next.disabled = !st.next;
        $(`${name}-page`).textContent = st.before.length || st.next ? `page ${st.before.length + 1}` : '';
      } catch (e) {
        if (e.message !== 'refused') console.warn(name, e);
      } finally {
        st.busy = false;
      }
    }
    prev.onclick = () => { st.cursor = st.before.pop() ?? null; refresh(); };
    next.onclick = () => {
      if (!st.next) return;
      st.before.push(st.cursor);
      st.cursor = st.next;
      refresh();
    };
    return { refresh };
  }

  const cursorQuery = (cursor, extra) => {
    const q = new URLSearchParams(extra);
    if (cursor && cursor.after_name !== undefined) {
      q.set('after_name', cursor.after_name);
      q.set('after_lease', cursor.after_lease);
    } else if (cursor) {
      q.set('after', cursor);
    }
    return q.toString();
  };

  // Lease rows shown now, by lease: when each runs out (on this page's clock) and its bar.
  const shown = new Map();

  function tick() {
    const now = performance.now();
    for (const row of shown.values()) {
      const left = Math.max(0, row.deadline - now);
      const frac = row.ttl > 0 ? Math.min(1, left / row.ttl) : 0;
      row.fill.style.width = `${(frac * 100).toFixed(1)}%`;
      row.fill.dataset.level = frac < 0.2 ? 'low' : frac < 0.5 ? 'mid' : 'ok';
      row.text.textContent = left > 0 ? duration(left) : 'lapsing';
    }
  }

  async function loadLeases(cursor) {
    const page = await get(`/api/leases?${cursorQuery(cursor, { limit: ROWS })}`);
    const now = performance.now();
    const body = $('leases').tBodies[0];
    body.replaceChildren();
    shown.clear();
    for (const l of page.leases) {
      const tr = el('tr');
      tr.dataset.lease = l.lease;
      const vendor = el('td', 'mono', shortKey(l.vendor));
      vendor.title = l.vendor;
      const left = el('td', 'left-col');
      const bar = el('div', 'bar');
      const fill = el('div', 'fill');
      bar.append(fill);
      const text = el('span', 'left-text');
      left.append(bar, text);
      const name = el('td', 'name', l.name);
      name.title = `lease ${l.lease}`;
      if (l.in_grace) name.append(el('span', 'tag', 'grace'));
      tr.append(
        name,
        el('td', '', l.version),
        vendor,
        el('td', 'ifaces', l.interfaces.join(', ')),
        el('td', 'mono', l.endpoints[0] || ''),
        left,
        el('td', 'num', l.renewals),
      );
      body.append(tr);
      shown.set(l.lease, { deadline: now + l.remaining_ms, ttl: l.ttl_ms, fill, text, tr });
    }
    $('leases-empty').hidden = page.leases.length > 0;
    tick();
    return page;
  }

  async function loadServices(cursor) {
    const page = await get(`/api/services?${cursorQuery(cursor, {})}`);
    const body = $('services').tBodies[0];
    body.replaceChildren();
    for (const s of page.services) {
      const vendors = el('td', 'mono', s.vendors.map(shortKey).join(', '));
      vendors.title = s.vendors.join('\n');
      const name = el('td', 'name', s.name);
      name.title = s.interfaces.join('\n');
      body.append(tr(name, vendors, el('td', '', s.versions.join(', ')), el('td', 'num', s.leases)));
    }
    $('services-empty').hidden = page.services.length > 0;
    return page;
  }

  async function loadClients(cursor) {
    const page = await get(`/api/clients?${cursorQuery(cursor, { limit: ROWS })}`);
    const body = $('clients').tBodies[0];
    body.replaceChildren();
    for (const c of page.clients) {
      const key = el('td', 'mono', shortKey(c.key));
      key.title = c.key;
      const call = el('td');
      if (c.last_call) {
        call.append(el('span', `badge ${c.last_call.ok ? 'ok' : 'failed'}`, c.last_call.ok ? 'ok' : 'failed'),
          document.createTextNode(` ${c.last_call.name}, ${ago(c.last_call.at_ms)}`));
      } else {
        call.textContent = '–';
      }
      body.append(tr(key, el('td', '', ago(c.last_contact_ms)), el('td', '', c.os || '–'), call));
    }
    $('clients-empty').hidden = page.clients.length > 0;
    return page;
  }

  function tr(...cells) {
    const row = el('tr');
    row.append(...cells);
    return row;
  }

  function addEvent(e) {
    const list = $('events');
    const li = el('li');
    li.dataset.seq = e.seq;
    li.append(
      el('span', 'when', clock(e.at_ms)),
      el('span', `badge ${e.kind}`, e.kind),
      el('span', 'name', e.name),
      el('span', 'mono muted', shortLease(e.lease)),
    );
    li.title = `#${e.seq} lease ${e.lease}\n${e.interfaces.join('\n')}`;
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    $('events-empty').hidden = true;
  }

  async function loadOverview(withEvents) {
    const o = await get('/api/overview');
    $('registry-id').textContent = o.registry_id;
    $('count-leases').textContent = o.leases;
    $('count-registrations').textContent = o.registrations;
    $('count-interfaces').textContent = o.interfaces;
    $('count-seq').textContent = o.next_seq;
    if (withEvents) {
      $('events').replaceChildren();
      for (const e of o.events) addEvent(e);
      $('events-empty').hidden = o.events.length > 0;
    }
  }

  const leases = pager('leases', loadLeases);
  const services = pager('services', loadServices);
  const clients = pager('clients', loadClients);

  let soon = null;
  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      leases.refresh();
      services.refresh();
      loadOverview(false).catch(() => {});
    }, 300);
  }

  function follow() {
    const feed = new EventSource('/api/events');
    feed.onopen = () => setStatus('live', 'live');
    feed.onerror = () => {
      if ($('status').dataset.state !== 'refused') setStatus('reconnecting', 'reconnecting…');
    };
    feed.addEventListener('lease', (m) => {
      const e = JSON.parse(m.data);
      addEvent(e);
      if (GONE.has(e.kind)) {
        const row = shown.get(e.lease);
        if (row) {
          row.tr.remove();
          shown.delete(e.lease);
          $('leases-empty').hidden = shown.size > 0;
        }
      }
      refreshSoon();
    });
    feed.addEventListener('gap', () => {
      loadOverview(true).catch(() => {});
      refreshSoon();
    });
  }

  async function start() {
    try {
      await loadOverview(true);
    } catch (e) {
      return;
    }
    await Promise.all([leases.refresh(), services.refresh(), clients.refresh()]);
    follow();
    setInterval(tick, TICK_MS);
    setInterval(() => { leases.refresh(); loadOverview(false).catch(() => {}); }, SNAPSHOT_MS);
    setInterval(() => { services.refresh(); clients.refresh(); }, SLOW_SNAPSHOT_MS);
  }

  start();
})();
