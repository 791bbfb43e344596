process REPORT {
    tag "cohort"
    label 'process_single'
    container "${params.container}"

    input:
    path metrics, stageAs: 'metrics/*'
    // the refused cases (case_id,step,message), one file collected from every task's refusal.csv ([] if none)
    path failures, stageAs: 'failures/*'

    output:
    path "report/cohort_metrics.csv", emit: cohort_metrics
    path "report/summary.csv", emit: summary
    path "report/report.html", emit: html
    path "report/failures.csv", emit: failures
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    script:
    def args = task.ext.args ?: ''
    def metrics_args = (metrics instanceof List ? metrics : [metrics]).collect { f -> "--metrics ${f}" }.join(' ')
    def failures_arg = failures ? "--failures ${failures}" : ''
    """
    gliocascade report ${metrics_args} ${failures_arg} --out report ${args}
    """

    stub:
    """
    mkdir -p report
    touch report/cohort_metrics.csv report/summary.csv report/report.html report/failures.csv
    """
}
