#!/usr/bin/env bash
# otpbridge pass extension: `pass otpbridge sync|backup|status|restore|…` for this store.
#
# Installed by `otpbridge hook install pass:STORE` or `otpbridge hook install-extension
# pass:STORE`, which fill in the absolute path of the otpbridge command below. pass
# sources extensions only when PASSWORD_STORE_ENABLE_EXTENSIONS=true; it sets $PREFIX to
# the store folder. This file holds no secret.

otpbridge_cmd=( @OTPBRIDGE_COMMAND@ )
otpbridge_home=@OTPBRIDGE_HOME@

otpbridge_usage() {
	cat <<-EOF
	Usage: ${PROGRAM:-pass} otpbridge COMMAND [ARGS…]
	    Sync, back up and restore this store's 2FA accounts with otpbridge
	    (store: $PREFIX).

	    sync | backup | status | verify | snapshots | devices | passphrase …
	        run 'otpbridge COMMAND …' for this store's otpbridge home
	    init REMOTE [--device NAME]   create or join a vault, with this store
	    restore [--snapshot ID] [--dry-run]
	                                  restore the vault's accounts into this store
	    list [QUERY] | code [QUERY]   the 2FA accounts of this store
	    help                          this text; 'otpbridge COMMAND --help' says more
	EOF
}

otpbridge_has() {  # otpbridge_has OPTION ARGS… : is OPTION (or OPTION=…) among ARGS?
	local want="$1" arg
	shift
	for arg in "$@"; do
		[[ $arg == "$want" || $arg == "$want="* ]] && return 0
	done
	return 1
}

if [[ ! -x ${otpbridge_cmd[0]} ]]; then
	echo "Error: otpbridge is no longer at ${otpbridge_cmd[0]}; run 'otpbridge hook install-extension pass:$PREFIX' again." >&2
	exit 1
fi

export PASSWORD_STORE_DIR="$PREFIX"
if [[ -z ${OTPBRIDGE_HOME:-} && -n $otpbridge_home ]]; then
	export OTPBRIDGE_HOME="$otpbridge_home"
fi

otpbridge_global=()
while [[ $# -gt 0 && $1 == -* && $1 != -h && $1 != --help ]]; do
	otpbridge_global+=("$1")
	shift
done

otpbridge_sub="${1:-help}"
[[ $# -gt 0 ]] && shift
otpbridge_store="pass:$PREFIX"

case "$otpbridge_sub" in
	help|-h|--help)
		otpbridge_usage
		exit 0
		;;
	sync|backup|status|verify|snapshots|devices|passphrase)
		exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" "$otpbridge_sub" "$@"
		;;
	restore)
		if otpbridge_has --into "$@"; then
			exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" restore "$@"
		fi
		exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" restore --into "$otpbridge_store" "$@"
		;;
	init)
		if otpbridge_has --store "$@"; then
			exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" init "$@"
		fi
		exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" init "$@" --store "$otpbridge_store"
		;;
	list|code)
		exec "${otpbridge_cmd[@]}" "${otpbridge_global[@]}" "$otpbridge_sub" "$otpbridge_store" "$@"
		;;
	*)
		echo "Error: unknown command '$otpbridge_sub' for ${PROGRAM:-pass} otpbridge" >&2
		otpbridge_usage >&2
		exit 2
		;;
esac
