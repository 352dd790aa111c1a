#!/usr/bin/env bash
# Install companion as a boot-time service on a robot (Raspberry Pi OS / Debian / Jetson Linux).
# Run from a checkout as root: sudo systemd/install.sh
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dest=/opt/companion
apt-get install -y --no-install-recommends libportaudio2 python3-venv
id companion >/dev/null 2>&1 || useradd --system --home-dir /var/lib/companion --shell /usr/sbin/nologin \
    --groups audio companion
mkdir -p "$dest"
cp -a "$src/." "$dest/"
python3 -m venv "$dest/.venv"
"$dest/.venv/bin/pip" install -q "$dest[export]"
# Prepare the models once into the service's cache directory, as the service user.
install -d -o companion -g companion /var/cache/companion /var/lib/companion
sudo -u companion COMPANION_MODELS_DIR=/var/cache/companion/models "$dest/.venv/bin/companion" models prepare
install -m 0644 "$dest/systemd/companion.service" /etc/systemd/system/companion.service
# The unit's MemoryMax: the prepared models' peak (measured by `companion bench`, else estimated) plus a
# margin, within this board's budget (its RAM less the profile's reserve). `companion doctor` checks it;
# a model that does not fit makes the service start with the profile's small model, or refuse.
install -d -m 0755 /etc/systemd/system/companion.service.d
sudo -u companion COMPANION_MODELS_DIR=/var/cache/companion/models "$dest/.venv/bin/companion" service memory-max \
    > /etc/systemd/system/companion.service.d/memory.conf
chmod 0644 /etc/systemd/system/companion.service.d/memory.conf
# The parents' dashboard: its own unit, HTTPS on the home network only. Its self-signed certificate is made
# now, as the service user, in the state directory (an existing one is kept: parents already checked it).
install -m 0644 "$dest/systemd/companion-parent.service" /etc/systemd/system/companion-parent.service
sudo -u companion COMPANION_DATA_DIR=/var/lib/companion "$dest/.venv/bin/companion" parent certificate >/dev/null
# The Wyoming server (asr, tts, the child-safe brain for Home Assistant or another robot): installed, off
# until a parent or maker turns it on (systemd/README.md); it loads the voice models a second time.
install -m 0644 "$dest/systemd/companion-wyoming.service" /etc/systemd/system/companion-wyoming.service
systemctl daemon-reload
systemctl enable --now companion.service companion-parent.service
sudo -u companion COMPANION_MODELS_DIR=/var/cache/companion/models COMPANION_DATA_DIR=/var/lib/companion \
    "$dest/.venv/bin/companion" doctor || true
echo "installed; follow it with: journalctl -u companion -f"
echo "parents' dashboard (set its password first: sudo -u companion COMPANION_DATA_DIR=/var/lib/companion" \
    "$dest/.venv/bin/companion parent set-password):"
sudo -u companion COMPANION_DATA_DIR=/var/lib/companion "$dest/.venv/bin/companion" parent url
