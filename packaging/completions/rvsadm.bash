# bash completion for rvsadm (ipvsadm's options plus RVS's own); installed
# for ipvsadm too when rvsadm provides it.
_rvsadm() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    case "$prev" in
        -s|--scheduler)
            COMPREPLY=($(compgen -W "rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos" -- "$cur"))
            return ;;
        -b|--sched-flags)
            COMPREPLY=($(compgen -W "sh-fallback sh-port mh-fallback mh-port" -- "$cur"))
            return ;;
        --tun-type)
            COMPREPLY=($(compgen -W "ipip" -- "$cur"))
            return ;;
        --socket)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        --sysctl)
            compopt -o nospace 2>/dev/null
            COMPREPLY=($(compgen -W "am_droprate= amemthresh= drop_entry= drop_packet= secure_tcp= sloppy_sctp= sloppy_tcp= sync_persist_mode=" -- "$cur"))
            return ;;
        --defense)
            compopt -o nospace 2>/dev/null
            COMPREPLY=($(compgen -W "am_droprate= amemthresh= drop_entry= drop_packet= secure_tcp=" -- "$cur"))
            return ;;
        -t|--tcp-service|-u|--udp-service|-f|--fwmark-service|-r|--real-server|-p|--persistent|-M|--netmask|-w|--weight|-x|--u-threshold|-y|--l-threshold|--any|--ports|--add-mark-rule|--delete-mark-rule)
            return ;;
    esac
    COMPREPLY=($(compgen -W "-A --add-service -E --edit-service -D --delete-service -C --clear -R --restore -S --save -a --add-server -e --edit-server -d --delete-server -L --list -Z --zero --set --reload --add-mark-rule --delete-mark-rule --list-mark-rules -h --help -v --version -t --tcp-service -u --udp-service -f --fwmark-service -6 --ipv6 -s --scheduler -p --persistent -M --netmask -b --sched-flags -o --ops -r --real-server -g --gatewaying -i --ipip -m --masquerading --tun-type -w --weight -x --u-threshold -y --l-threshold -n --numeric -c --connection --timeout --stats --rate --thresholds --persistent-conn --nosort --sort -X --exact --any --ports --mark-rules --defense --sysctl --socket" -- "$cur"))
}
complete -F _rvsadm rvsadm ipvsadm
