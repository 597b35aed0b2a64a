// The create form: a space's name, one of the caller's accounts, a cluster that account may create in, and the
// parameters its templates declare (default, required, the pattern a value must match). The server judges what is
// sent, as for kubectl: its refusal is shown in the alert region and at each field it names. The form's own
// constraints only mark a field while it is typed, so the server's words are the ones the user reads.

import {request, SPACES} from './api.js';
import {alert, announce, clearAlert, clearFieldErrors, h, markFields} from './ui.js';

const form = document.getElementById('create');
const nameInput = document.getElementById('create-name');
const accountSelect = document.getElementById('create-account');
const clusterSelect = document.getElementById('create-cluster');
const fieldset = document.getElementById('create-parameters');
const fields = document.getElementById('create-parameter-fields');

let accounts = new Map();
/// What the account-dependent part of the form shows, so an unrelated change (a space count) keeps what was typed.
let shown;

/// The caller's accounts (name -> Account view), as the accounts watch keeps them.
export function setAccounts(items) {
  accounts = items;
  const chosen = accountSelect.value;
  const names = items.size ? [...items.keys()].sort() : [''];
  const options = [...accountSelect.options].map((o) => o.value);
  if (options.length !== names.length || options.some((o, i) => o !== names[i])) {
    accountSelect.replaceChildren(...names.map((n) => h('option', {value: n}, n || 'No account (a space of your own)')));
    if (names.includes(chosen)) {
      accountSelect.value = chosen;
    }
  }
  showAccount();
}

function showAccount() {
  const space = accounts.get(accountSelect.value)?.spec?.space || {};
  const parameters = space.parameters || [];
  const clusters = space.clusters || [];
  // A trunk-only install keeps no spaces in its own cluster: the account's first connected cluster is the default.
  const local = space.local !== false;
  const key = JSON.stringify([accountSelect.value, parameters, clusters, local]);
  if (key === shown) {
    return;
  }
  shown = key;
  const chosenCluster = clusterSelect.value;
  clusterSelect.replaceChildren(
    ...(local ? [h('option', {value: ''}, 'This cluster')] : []),
    ...clusters.map((c) => h('option', {value: c}, c)),
  );
  if (clusters.includes(chosenCluster)) {
    clusterSelect.value = chosenCluster;
  }
  const typed = new Map([...fields.querySelectorAll('input')].map((i) => [i.name, i.value]));
  const byName = new Map();
  for (const parameter of parameters) {
    byName.set(parameter.name, [...(byName.get(parameter.name) || []), parameter]);
  }
  fields.replaceChildren(...[...byName].map(([name, declared]) => parameterField(name, declared, typed.get(name))));
  fieldset.hidden = byName.size === 0;
}

/// Whether the browser can use `pattern` as an input's pattern (the server's syntax is Rust's `regex`, mostly the same).
function usable(pattern) {
  try {
    new RegExp(pattern, 'v');
    return true;
  } catch {
    return false;
  }
}

/// One input for parameter `name`, declared by one template or more (each may ask something of it).
function parameterField(name, declared, value) {
  const id = `parameter-${name}`;
  const fallback = declared.map((p) => p.default).find((d) => d !== undefined && d !== '');
  // Required means the value, given or defaulted, may not be empty: with a default, nothing must be typed.
  const required = declared.some((p) => p.required) && fallback === undefined;
  const pattern = declared.map((p) => p.validation).find(Boolean);
  const hints = [
    ...declared.map((p) => p.description).filter(Boolean),
    fallback !== undefined ? `Default: ${fallback}` : '',
    pattern ? `Must match: ${pattern}` : '',
    `SpaceTemplate ${[...new Set(declared.map((p) => p.template))].join(', ')}`,
  ].filter(Boolean);
  const input = h('input', {
    id, name, required, autocomplete: 'off', spellcheck: 'false', placeholder: fallback,
    pattern: pattern && usable(pattern) ? pattern : undefined, 'data-parameter': name,
    'aria-describedby': `${id}-hint ${id}-error`,
  });
  input.value = value || '';
  return h('div', {class: 'field'},
    h('label', {for: id}, name, required ? ' (required)' : ''),
    input,
    h('p', {id: `${id}-hint`, class: 'hint'}, hints.join(' · ')),
    h('p', {id: `${id}-error`, class: 'field-error'}));
}

/// The input of a refusal's field (`metadata.name`, `spec.templateParameters.tier`), if the form has one.
function inputFor(field) {
  if (field === 'metadata.name') {
    return nameInput;
  }
  if (field.startsWith('spec.templateParameters.')) {
    return fields.querySelector(`[data-parameter="${CSS.escape(field.slice('spec.templateParameters.'.length))}"]`);
  }
  return null;
}

accountSelect.addEventListener('change', showAccount);
form.addEventListener('input', (event) => {
  event.target.removeAttribute?.('aria-invalid');
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  const cluster = clusterSelect.value;
  const name = nameInput.value.trim();
  const templateParameters = {};
  for (const input of fields.querySelectorAll('input')) {
    if (input.value !== '') {
      templateParameters[input.name] = input.value;
    }
  }
  const spec = {};
  if (accountSelect.value) {
    spec.account = accountSelect.value;
  }
  if (Object.keys(templateParameters).length) {
    spec.templateParameters = templateParameters;
  }
  const space = {
    apiVersion: 'tenancy.loft.sh/v1',
    kind: 'Space',
    metadata: {name: cluster ? `${cluster}.${name}` : name},
    spec,
  };
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    const created = await request('POST', `${SPACES}?fieldManager=tenancy-console`, space);
    clearAlert('create');
    announce(`space.tenancy.loft.sh/${created.metadata.name} created`);
    // A reset, so the emptied fields are not marked as left invalid; the account and cluster stay as chosen.
    const [account, chosenCluster] = [accountSelect.value, clusterSelect.value];
    form.reset();
    accountSelect.value = account;
    clusterSelect.value = chosenCluster;
  } catch (error) {
    alert('create', error);
    markFields(error.status?.details?.causes || [], inputFor);
  } finally {
    submit.disabled = false;
  }
});
