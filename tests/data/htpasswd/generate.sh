#!/bin/sh
# Regenerates these fixtures with Apache's own htpasswd (Debian: apt-get install apache2-utils).
# The passwords are in tests/test_passwords.py; every run draws new salts.
set -eu
cd "$(dirname "$0")"

# One user per format htpasswd writes (bcrypt at cost 5, htpasswd's default).
f=apache.htpasswd
htpasswd -cbB "$f" bcrypt 'bcrypt: secret'
htpasswd -bm "$f" apr1 'apr1: secret'
htpasswd -b "$f" default 'default: secret'
htpasswd -bs "$f" sha1 'sha1: secret'
htpasswd -b2 "$f" sha256 'sha256: secret'
htpasswd -b5 "$f" sha512 'sha512: secret'
htpasswd -b5 -r 10000 "$f" sha512-rounds 'sha512 rounds: secret'
htpasswd -bB "$f" 'ünïcødé' 'pässwörd ✓'
# htpasswd -B hashes only the first 72 bytes of this 80-byte password.
htpasswd -bB "$f" long-bcrypt 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'

# What htpasswd also writes, and authmw refuses.
htpasswd -cbd des.htpasswd user 'des: secret'
htpasswd -cbp plaintext.htpasswd user 'plain: secret' 2>/dev/null
htpasswd -cb2 -r 500 failed-crypt.htpasswd user 'secret'  # under 1000 rounds crypt() fails: "*0"
