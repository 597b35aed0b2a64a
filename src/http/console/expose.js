// The Spaces page's "Publish a service" form and list, as `kubectl space expose` does it: for a space of this cluster
// with a domain (its status.domain), an Ingress at SUB.<domain> routing to one of its services, with TLS from the
// platform's shared ClusterIssuer (status.domainIssuer); and what the space publishes now, each URL with its
// certificate's readiness (cert-manager's Certificate condition Ready). kube-apiserver refuses any host the space does
// not own, and its refusal is shown as kubectl would print it.

import {ApiError, get, request} from './api.js';
import {alert, announce, clearAlert, h, table} from './ui.js';

const form = document.getElementById('expose');
const spaceSelect = document.getElementById('expose-space');
const serviceSelect = document.getElementById('expose-service');
const portSelect = document.getElementById('expose-port');
const hostInput = document.getElementById('expose-host');
const domainText = document.getElementById('expose-domain');
const list = document.getElementById('expose-list');

/// Spaces with a domain, by name: {domain, issuer}.
let spaces = new Map();
let services = [];

/// The caller's spaces changed: offer those of this cluster that have a domain.
export function setSpaces(items) {
  const now = new Map([...items.values()]
    .filter((s) => s.status?.domain && !s.spec?.cluster && !s.metadata.deletionTimestamp)
    .map((s) => [s.metadata.name, {domain: s.status.domain, issuer: s.status.domainIssuer}]));
  const before = JSON.stringify([...spaces]);
  spaces = now;
  if (JSON.stringify([...now]) === before) {
    return;
  }
  form.hidden = now.size === 0;
  const chosen = spaceSelect.value;
  const names = [...now.keys()].sort();
  spaceSelect.replaceChildren(...names.map((n) => h('option', {value: n}, n)));
  if (names.includes(chosen)) {
    spaceSelect.value = chosen;
  }
  if (spaceSelect.value !== chosen) {
    showSpace();
  }
}

async function showSpace() {
  const name = spaceSelect.value;
  domainText.textContent = spaces.get(name)?.domain || '';
  services = [];
  if (name) {
    try {
      services = (await get(`api/v1/namespaces/${encodeURIComponent(name)}/services`)).items || [];
      clearAlert('expose-services');
    } catch (error) {
      alert('expose-services', error);
    }
  }
  serviceSelect.replaceChildren(...services.map((s) => h('option', {value: s.metadata.name}, s.metadata.name)));
  showService();
  refresh();
}

function showService() {
  const service = services.find((s) => s.metadata.name === serviceSelect.value);
  const ports = service?.spec?.ports || [];
  portSelect.replaceChildren(...ports.map((p) => h('option', {value: String(p.port)}, `${p.name ? `${p.name} ` : ''}${p.port}`)));
  hostInput.placeholder = serviceSelect.value;
}

/// The Ingress `kubectl space expose` makes for `service` at `host`.
function ingress(name, namespace, host, service, port, issuer) {
  const object = {
    apiVersion: 'networking.k8s.io/v1', kind: 'Ingress',
    metadata: {name, namespace, labels: {'app.kubernetes.io/managed-by': 'kubectl-space'}},
    spec: {rules: [{host, http: {paths: [{path: '/', pathType: 'Prefix',
      backend: {service: {name: service, port: {number: Number(port)}}}}]}}]},
  };
  if (issuer) {
    object.metadata.annotations = {'cert-manager.io/cluster-issuer': issuer};
    object.spec.tls = [{hosts: [host], secretName: `${name}-tls`}];
  }
  return object;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const namespace = spaceSelect.value;
  const {domain, issuer} = spaces.get(namespace) || {};
  const sub = (hostInput.value.trim() || serviceSelect.value).toLowerCase();
  if (!namespace || !serviceSelect.value) {
    return;
  }
  const host = `${sub}.${domain}`;
  const name = sub.replaceAll('.', '-');
  try {
    await request('POST', `apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/ingresses`,
      ingress(name, namespace, host, serviceSelect.value, portSelect.value, issuer));
    clearAlert('expose');
    announce(`ingress.networking.k8s.io/${name} exposed: ${issuer ? 'https' : 'http'}://${host}`);
    hostInput.value = '';
  } catch (error) {
    alert('expose', error);
  }
  refresh();
});

/// Each certificate's readiness by its Secret's name; none where cert-manager is not installed.
async function readiness(namespace) {
  try {
    const certificates = await get(`apis/cert-manager.io/v1/namespaces/${encodeURIComponent(namespace)}/certificates`);
    return new Map((certificates.items || []).map((c) => [c.spec?.secretName,
      c.status?.conditions?.find((k) => k.type === 'Ready')?.status === 'True' ? 'Ready' : 'Not ready yet']));
  } catch (error) {
    if (error instanceof ApiError && error.code === 404) {
      return new Map();
    }
    throw error;
  }
}

let generation = 0;

/// What the chosen space publishes now.
async function refresh() {
  const mine = ++generation;
  const namespace = spaceSelect.value;
  if (!namespace) {
    list.replaceChildren();
    return;
  }
  try {
    const [ingresses, ready] = await Promise.all([
      get(`apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/ingresses`),
      readiness(namespace),
    ]);
    if (mine !== generation) {
      return;
    }
    clearAlert('expose-list');
    const rows = (ingresses.items || []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).flatMap((i) => {
      const tls = i.spec?.tls || [];
      return (i.spec?.rules || []).filter((r) => r.host).map((r) => {
        const secure = tls.find((t) => (t.hosts || []).includes(r.host));
        const url = `${secure ? 'https' : 'http'}://${r.host}`;
        return [i.metadata.name, h('a', {href: url}, url),
          secure ? ready.get(secure.secretName) || 'No certificate yet' : 'No TLS'];
      });
    });
    list.replaceChildren(table(`Published by ${namespace}`, ['Ingress', 'URL', 'Certificate'], rows, 'Nothing published yet'));
  } catch (error) {
    alert('expose-list', error);
  }
}

spaceSelect.addEventListener('change', showSpace);
serviceSelect.addEventListener('change', showService);
document.getElementById('expose-refresh').addEventListener('click', showSpace);
