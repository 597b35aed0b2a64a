// The platform team's pages, for users who may read the config CRDs (config.tenancy.loft.sh): every Account with its
// spaces against its limit and its AccountQuota's use, the SpaceTemplates with their parameters and objects, and the
// connected Clusters with their status. Read when a page is shown or refreshed; what the user may not read is the
// server's 403, shown as kubectl would.

import {CONFIG, get} from './api.js';
import {age, alert, clearAlert, details, h, table, usage} from './ui.js';

const subject = (s) => `${s.kind} ${s.namespace ? `${s.namespace}/` : ''}${s.name}`;

async function accounts() {
  // The accounts are the page; their quotas, read alongside, only add to it (their failure is said apart).
  const [list, quotas] = await Promise.allSettled([get(`${CONFIG}/accounts`), get(`${CONFIG}/accountquotas`)]);
  if (list.status === 'rejected') {
    throw list.reason;
  }
  if (quotas.status === 'rejected') {
    alert('platform-accountquotas', quotas.reason);
  } else {
    clearAlert('platform-accountquotas');
  }
  const quotaOf = new Map((quotas.value?.items || []).map((q) => [q.spec?.account, q]));
  list.value.items ||= [];
  const items = list.value.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  if (!items.length) {
    return [h('p', {}, 'No accounts.')];
  }
  return items.map((account) => {
    const name = account.metadata.name;
    const space = account.spec?.space || {};
    const quota = quotaOf.get(name);
    const total = quota?.status?.total || {};
    const id = `platform-account-${name}`;
    return h('article', {class: 'card', 'aria-labelledby': id},
      h('h2', {id}, name),
      usage('Spaces', account.status?.spaceCount ?? 0, space.limit),
      quota
        ? Object.keys(quota.spec?.quota?.hard || {}).sort().map((resource) =>
          usage(resource, total.used?.[resource] ?? '0', total.hard?.[resource] ?? quota.spec.quota.hard[resource]))
        : h('p', {class: 'hint'}, 'No AccountQuota.'),
      details([
        ['Members', (account.spec?.subjects || []).map(subject).join(', ') || '<none>'],
        ['Templates', space.templates ? space.templates.join(', ') || '<none>' : 'default'],
        ['Clusters', space.clusters ? ['this cluster', ...space.clusters].join(', ') : 'this cluster and every connected cluster'],
        ['AccountQuota', quota ? quota.metadata.name : '<none>'],
        ['Age', age(account.metadata.creationTimestamp)],
      ]));
  });
}

async function templates() {
  const list = await get(`${CONFIG}/spacetemplates`);
  const items = (list.items || []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  if (!items.length) {
    return [h('p', {}, 'No SpaceTemplates.')];
  }
  return items.map((template) => {
    const name = template.metadata.name;
    const id = `template-${name}`;
    const parameters = (template.spec?.parameters || []).map((p) => [
      p.name, p.default ?? '', p.required ? 'yes' : 'no', p.validation ?? '', p.description ?? '',
    ]);
    const objects = (template.spec?.objects || []).map((o) => `${o.kind || '?'}/${o.metadata?.name || '?'}`);
    return h('article', {class: 'card', 'aria-labelledby': id},
      h('h2', {id}, name),
      table(`Parameters of ${name}`, ['Name', 'Default', 'Required', 'Validation', 'Description'], parameters, 'No parameters'),
      details([
        ['Objects', objects.join(', ') || '<none>'],
        ['Generation', String(template.metadata.generation ?? '')],
        ['Age', age(template.metadata.creationTimestamp)],
      ]));
  });
}

async function clusters() {
  const [list, install] = await Promise.all([
    get(`${CONFIG}/clusters`),
    fetch('install.json').then((r) => (r.ok ? r.json() : {})).catch(() => ({})),
  ]);
  const where = install.localSpaces === false
    ? 'Spaces live in the connected clusters only: this is a trunk-only install (--local-spaces=false), whose own namespaces are never spaces.'
    : 'Spaces live in this cluster and in every connected cluster (--local-spaces=true).';
  const items = (list.items || []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const rows = items.map((cluster) => {
    const status = cluster.status || {};
    // Every problem the server reports, as the sentences it writes (Ready, and Guarded when its guards are missing).
    const problems = (status.conditions || []).filter((c) => c.status !== 'True' && c.message).map((c) => c.message);
    return [
      cluster.metadata.name,
      cluster.spec?.displayName || '',
      status.phase || 'Pending',
      status.version || '',
      status.namespaces === undefined ? '' : String(status.namespaces),
      h('span', {class: 'wrap'}, problems.join(' ')),
      age(cluster.metadata.creationTimestamp),
    ];
  });
  return [h('p', {class: 'hint', id: 'install-mode'}, where),
    table('Connected clusters', ['Name', 'Display name', 'Phase', 'Version', 'Namespaces', 'Message', 'Age'], rows,
      'No connected clusters: connect one below, or with tenancy-apiserver connect.')];
}

const PAGES = {'platform-accounts': accounts, templates, clusters};

/// Reads and shows platform page `page` (a key of PAGES).
export async function show(page) {
  const section = document.querySelector(`[data-page="${page}"]`);
  const content = section.querySelector('.content');
  content.setAttribute('aria-busy', 'true');
  try {
    content.replaceChildren(...await PAGES[page]());
    clearAlert(page);
  } catch (error) {
    alert(page, error);
    content.replaceChildren(h('p', {}, error.message));
  } finally {
    content.removeAttribute('aria-busy');
  }
}

export const pages = Object.keys(PAGES);

for (const page of pages) {
  document.querySelector(`[data-page="${page}"] .refresh`).addEventListener('click', () => show(page));
}
