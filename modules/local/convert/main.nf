process CONVERT {
    tag "${meta.id}"
    label 'process_low'

    input:
    // a DICOM study folder, or ([] for the study and) one series folder per modality
    tuple val(meta), path(dicom_dir, stageAs: 'study/*'), path(t1, stageAs: 'series/t1/*'), path(t1ce, stageAs: 'series/t1ce/*'), path(t2, stageAs: 'series/t2/*'), path(flair, stageAs: 'series/flair/*')

    output:
    // a refused case (bad input) writes refusal.csv instead of its outputs (GLIOCASCADE_REFUSAL_RECORD)
    tuple val(meta), path("converted/${task.ext.prefix ?: meta.id}_t1.nii.gz"), path("converted/${task.ext.prefix ?: meta.id}_t1ce.nii.gz"), path("converted/${task.ext.prefix ?: meta.id}_t2.nii.gz"), path("converted/${task.ext.prefix ?: meta.id}_flair.nii.gz"), emit: images, optional: true
    tuple val(meta), path("converted/series.csv"), emit: series, optional: true
    tuple val(meta), path("refusal.csv"), emit: refusal, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def input_args = dicom_dir ? "--dicom ${dicom_dir}" : "--t1 ${t1} --t1ce ${t1ce} --t2 ${t2} --flair ${flair}"
    """
    gliocascade convert ${input_args} --out converted --case-id ${prefix} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p converted
    touch converted/${prefix}_{t1,t1ce,t2,flair}.nii.gz converted/series.csv
    """
}
