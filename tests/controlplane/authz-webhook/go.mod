module tenancy-apiserver/tests/controlplane/authz-webhook

go 1.26.0
