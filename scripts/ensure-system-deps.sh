#!/usr/bin/env bash
# System packages the test suite needs beyond Python: the Google Cloud CLI emulators
# (Java 17), Terraform (for `terraform fmt`), and Debian's Chromium + ChromeDriver
# for the browser tests. Installs what it can (Chromium), and fails with a clear
# message for what it cannot, instead of letting tests skip silently.
set -euo pipefail

missing=()
command -v gcloud >/dev/null || missing+=("gcloud (Google Cloud CLI with the pubsub and firestore emulators)")
command -v java >/dev/null || missing+=("java (17+, for the emulators)")
command -v terraform >/dev/null || missing+=("terraform (for terraform fmt -check)")

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium and chromium-driver for the browser tests..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null; }
  else
    missing+=("chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  printf 'missing system tools needed by the tests:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
