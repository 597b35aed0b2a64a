// Small DOM helpers every page shares: building elements, the alert and status regions, tables that update in place
// (so a keyboard user's focus survives a live update), kube's ages and quantities, and usage meters.

/// `h('td', {class: 'x'}, 'text', child)`: an element with attributes (`on*` as listeners) and children.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key.startsWith('on')) {
      element.addEventListener(key.slice(2), value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, String(value));
    }
  }
  element.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return element;
}

/// Errors, in the role=alert region, one per source (`key`): a newer failure of the same source replaces the older.
export function alert(key, error) {
  const region = document.getElementById('alerts');
  let item = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = h('div', {class: 'alert', 'data-key': key});
    region.append(item);
  }
  const text = error instanceof Error ? error.message : String(error);
  item.replaceChildren(
    h('p', {}, text),
    h('button', {type: 'button', class: 'quiet', onclick: () => item.remove()}, 'Dismiss'),
  );
  if (!(error instanceof Error && error.name === 'ApiError')) {
    console.error(error);
  }
}

export function clearAlert(key) {
  document.querySelector(`#alerts [data-key="${CSS.escape(key)}"]`)?.remove();
}

/// A polite announcement (role=status): what just succeeded.
export function announce(text) {
  document.getElementById('status').textContent = text;
}

/// A table that keeps one row per key and updates them in place: `render(item, cells)` fills a row's cells (an array
/// of elements, one per column). Rows follow `keys` order, moved only when out of place.
export function keyedTable(tbody, columns, emptyText) {
  const rows = new Map();
  return (items, render) => {
    const keys = [...items.keys()].sort();
    for (const [key, row] of rows) {
      if (!items.has(key)) {
        row.remove();
        rows.delete(key);
      }
    }
    keys.forEach((key, i) => {
      let row = rows.get(key);
      if (!row) {
        row = h('tr', {'data-key': key}, columns.map((_, c) => h(c === 0 ? 'th' : 'td', c === 0 ? {scope: 'row'} : {})));
        rows.set(key, row);
      }
      render(items.get(key), [...row.children]);
      const at = tbody.children[i];
      if (at !== row) {
        tbody.insertBefore(row, at || null);
      }
    });
    let empty = tbody.querySelector('tr.empty');
    if (keys.length === 0 && !empty) {
      empty = h('tr', {class: 'empty'}, h('td', {colspan: columns.length}, emptyText));
      tbody.append(empty);
    } else if (keys.length > 0 && empty) {
      empty.remove();
    }
  };
}

/// A plain table, built whole: `columns` headers, `rows` arrays of cells (strings or elements).
export function table(caption, columns, rows, emptyText = 'No resources found') {
  const body = rows.length
    ? rows.map((cells) => h('tr', {}, cells.map((cell, i) => h(i === 0 ? 'th' : 'td', i === 0 ? {scope: 'row'} : {}, cell))))
    : [h('tr', {class: 'empty'}, h('td', {colspan: columns.length}, emptyText))];
  return h('div', {class: 'scroll', role: 'region', 'aria-label': caption, tabindex: 0},
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, body)));
}

/// kubectl's AGE: apimachinery's HumanDuration of the time since `timestamp`.
export function age(timestamp, now = Date.now()) {
  if (!timestamp) {
    return '<unknown>';
  }
  const seconds = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  const days = Math.floor(hours / 24);
  const years = Math.floor(days / 365);
  if (seconds < 120) return `${seconds}s`;
  if (minutes < 10) return seconds % 60 ? `${minutes}m${seconds % 60}s` : `${minutes}m`;
  if (minutes < 180) return `${minutes}m`;
  if (hours < 8) return minutes % 60 ? `${hours}h${minutes % 60}m` : `${hours}h`;
  if (hours < 48) return `${hours}h`;
  if (hours < 192) return hours % 24 ? `${days}d${hours % 24}h` : `${days}d`;
  if (days < 730) return `${days}d`;
  if (years < 8) return days % 365 ? `${years}y${days % 365}d` : `${years}y`;
  return `${years}y`;
}

/// An AGE cell's text, kept current by `tickAges`.
export function setAge(cell, timestamp) {
  cell.dataset.since = timestamp || '';
  cell.textContent = age(timestamp);
}

export function tickAges() {
  for (const cell of document.querySelectorAll('[data-since]')) {
    cell.textContent = age(cell.dataset.since);
  }
}

const SUFFIXES = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/// A kube quantity ("500m", "2Gi", "1e3") as a number, for comparing use with a limit; NaN if it is none.
export function quantity(text) {
  const match = /^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?)$/.exec(String(text ?? '').trim());
  if (!match) {
    return NaN;
  }
  const base = Number(match[1]);
  return match[2] ? base * 10 ** Number(match[2].slice(1)) : base * SUFFIXES[match[3] || ''];
}

/// "label: used of limit" with a <meter>, or just the count when there is no limit.
export function usage(label, used, limit) {
  const usedNumber = quantity(used ?? 0);
  const limitNumber = quantity(limit);
  const text = limit === undefined || limit === null ? `${used ?? 0} (no limit)` : `${used ?? 0} of ${limit}`;
  const id = `meter-${Math.random().toString(36).slice(2)}`;
  const row = h('div', {class: 'usage'}, h('span', {id}, `${label}: ${text}`));
  if (Number.isFinite(limitNumber) && limitNumber > 0 && Number.isFinite(usedNumber)) {
    row.append(h('meter', {
      'aria-labelledby': id, min: 0, max: limitNumber, value: Math.min(usedNumber, limitNumber),
      low: limitNumber * 0.7, high: limitNumber * 0.9, optimum: 0,
    }));
  }
  return row;
}

/// A definition list of `[term, description]` pairs, for an object's details.
export function details(pairs) {
  return h('dl', {class: 'details'}, pairs.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/// Clears what a refusal marked in `form`: invalid fields and their error texts.
export function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    input.removeAttribute('aria-invalid');
  }
  for (const error of form.querySelectorAll('.field-error')) {
    error.textContent = '';
  }
}

/// Puts each cause of a refusal at its field (`inputFor(cause.field)`, or none), in the field's `<id>-error` text, and
/// focuses the first.
export function markFields(causes, inputFor) {
  let first;
  for (const cause of causes) {
    const input = inputFor(cause.field || '');
    if (!input) {
      continue;
    }
    input.setAttribute('aria-invalid', 'true');
    const error = document.getElementById(`${input.id}-error`);
    error.textContent = [error.textContent, cause.message].filter(Boolean).join(' ');
    first ||= input;
  }
  first?.focus();
}
