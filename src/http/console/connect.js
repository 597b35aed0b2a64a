// The connect form of the clusters page (the platform team): a cluster's name, a display name, and an admin
// kubeconfig pasted whole, posted as a ClusterConnection. The server checks the kubeconfig before it makes anything and
// says what is wrong at the field (it does not parse, its cluster does not answer, its user lacks the rights); the
// kubeconfig is cleared from the page once sent, whatever the answer.

import {CONNECTIONS, request} from './api.js';
import {alert, announce, clearAlert, clearFieldErrors, markFields} from './ui.js';
import {show} from './platform.js';

const form = document.getElementById('connect');
const nameInput = document.getElementById('connect-name');
const displayInput = document.getElementById('connect-display');
const kubeconfigInput = document.getElementById('connect-kubeconfig');
const FIELDS = {'metadata.name': nameInput, 'spec.kubeconfig': kubeconfigInput};

form.addEventListener('input', (event) => {
  event.target.removeAttribute?.('aria-invalid');
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  const spec = {kubeconfig: kubeconfigInput.value};
  if (displayInput.value.trim()) {
    spec.displayName = displayInput.value.trim();
  }
  const connection = {
    apiVersion: 'tenancy.loft.sh/v1',
    kind: 'ClusterConnection',
    metadata: {name: nameInput.value.trim()},
    spec,
  };
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  try {
    const connected = await request('POST', CONNECTIONS, connection);
    clearAlert('connect');
    announce(`cluster ${connected.metadata.name} connected`);
    form.reset();
    await show('clusters');
  } catch (error) {
    alert('connect', error);
    markFields(error.status?.details?.causes || [], (field) => FIELDS[field]);
  } finally {
    submit.disabled = false;
  }
});
