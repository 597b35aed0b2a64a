// The "Shared services" page: the spaces labelled tenancy.loft.sh/shared=true among those the caller sees (every
// tenant sees them), and their services as a pod reaches them: `<service>.<namespace>.svc.cluster.local` and ports.
// Services are read from this cluster's API (the shared-reader binding allows it); a connected cluster's shared
// spaces are listed without them, as their services live behind another API.

import {get} from './api.js';
import {alert, clearAlert, h, table} from './ui.js';

const SHARED_LABEL = 'tenancy.loft.sh/shared';
const list = document.getElementById('shared-list');
let shared = [];
let visible = false;

/// The caller's spaces changed: keep the shared ones, and show their services again if the set changed.
export function setSpaces(items) {
  const now = [...items.values()]
    .filter((space) => space.metadata.labels?.[SHARED_LABEL] === 'true' && !space.metadata.deletionTimestamp)
    .map((space) => ({name: space.metadata.name, cluster: space.spec?.cluster || ''}))
    .sort((a, b) => a.name.localeCompare(b.name));
  const changed = JSON.stringify(now) !== JSON.stringify(shared);
  shared = now;
  if (changed && visible) {
    refresh();
  }
}

/// The page is shown (or hidden): services are read while it is shown.
export function shown(isShown) {
  visible = isShown;
  if (isShown) {
    refresh();
  }
}

/// "http 80/TCP → 8080" for each port of a service.
function ports(service) {
  return (service.spec?.ports || [])
    .map((p) => `${p.name ? `${p.name} ` : ''}${p.port}/${p.protocol || 'TCP'}${p.targetPort !== undefined && p.targetPort !== p.port ? ` → ${p.targetPort}` : ''}`)
    .join(', ') || '<none>';
}

async function section({name, cluster}) {
  const heading = h('h2', {}, name);
  if (cluster) {
    return h('section', {class: 'card'}, heading,
      h('p', {class: 'hint'}, `In connected cluster ${cluster}: its services are listed by that cluster’s API.`));
  }
  const namespace = name;
  try {
    const services = await get(`api/v1/namespaces/${encodeURIComponent(namespace)}/services`);
    clearAlert(`shared-${namespace}`);
    const rows = (services.items || [])
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .map((service) => [
        service.metadata.name,
        h('code', {}, `${service.metadata.name}.${namespace}.svc.cluster.local`),
        ports(service),
      ]);
    return h('section', {class: 'card'}, heading,
      table(`Services of ${namespace}`, ['Service', 'DNS name', 'Ports'], rows, 'No services'));
  } catch (error) {
    alert(`shared-${namespace}`, error);
    return h('section', {class: 'card'}, heading, h('p', {}, error.message));
  }
}

let generation = 0;

async function refresh() {
  // Only the latest refresh shows what it read: an older one may finish later.
  const mine = ++generation;
  const sections = await Promise.all(shared.map(section));
  if (mine !== generation) {
    return;
  }
  list.replaceChildren(...(sections.length
    ? sections
    : [h('p', {}, 'No shared spaces: the platform team shares one by labelling it tenancy.loft.sh/shared=true.')]));
}

document.getElementById('shared-refresh').addEventListener('click', refresh);
