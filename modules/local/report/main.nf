process REPORT {
    tag "cohort"
    label 'process_single'

    input:
    path metrics, stageAs: 'metrics/*'
    // the refused cases (case_id,step,message), one file collected from every task's refusal.csv ([] if none)
    path failures, stageAs: 'failures/*'
    // what the case pages show: every file of the reported cases, each in its own numbered folder, and
    // the CSV naming each one's case and role there (case_id,role,path; [] for none)
    path case_files, stageAs: 'cases/f?????/*'
    path case_sheet, stageAs: 'case_files.csv'
    // the model folders the cases were predicted with (their cards) and the atlas of preprocess
    // (the atlas brain outline; [] for the container's), for the case pages
    path models, stageAs: 'model_?'
    path atlas, stageAs: 'atlas'

    output:
    path "${task.ext.prefix ?: 'report'}/cohort_metrics.csv", emit: cohort_metrics
    path "${task.ext.prefix ?: 'report'}/summary.csv", emit: summary
    path "${task.ext.prefix ?: 'report'}/report.html", emit: html
    path "${task.ext.prefix ?: 'report'}/failures.csv", emit: failures
    path "${task.ext.prefix ?: 'report'}/cases/*.html", emit: case_pages, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: 'report'
    def metrics_args = (metrics instanceof List ? metrics : [metrics]).collect { f -> "--metrics ${f}" }.join(' ')
    def failures_arg = failures ? "--failures ${failures}" : ''
    def case_arg = case_sheet ? "--case-files ${case_sheet}" : ''
    def model_args = (models instanceof List ? models : [models]).collect { m -> "--model ${m}" }.join(' ')
    def atlas_arg = atlas ? "--atlas ${atlas}" : ''
    """
    gliocascade report ${metrics_args} ${failures_arg} ${case_arg} ${model_args} ${atlas_arg} --out ${prefix} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: 'report'
    """
    mkdir -p ${prefix}/cases
    touch ${prefix}/cohort_metrics.csv ${prefix}/summary.csv ${prefix}/report.html ${prefix}/failures.csv ${prefix}/cases/stub.html
    """
}
